"""Test ELBO and the importance-sampled estimate of -log p(x|y) (Burda et al., 2016), in nats.

    log p(x|y) ~= logmeanexp_k [ log p(x|z_k,y) + log p(z_k|y) - log q(z_k|x,y) ],  z_k ~ q(z|x,y)

The prior in the sum is either the training prior or the one an artifact samples from (the
aggregate-posterior mixture), since that is the generative model a user actually gets.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.distributions import MultivariateNormal, Normal

from cvae_sdk.progress import progress_bar

from .model import CVAE

MAX_ROWS = 32768  # images x importance samples decoded at once
MIXTURE_TERMS = 1 << 23  # importance samples x images x components scored at once by a diagonal mixture


def prior_log_prob(model: CVAE, prior: dict[str, torch.Tensor] | None, z: torch.Tensor,
                   y: torch.Tensor) -> torch.Tensor:
    """log p(z|y) for z (S, B, D), y (B,): the mixture ``prior`` if given, else the training prior."""
    if prior is None:
        mean, logvar = model.prior(y)                                   # (B, D)
        return Normal(mean, (0.5 * logvar).exp()).log_prob(z).sum(-1)   # (S, B)
    log_weights = prior["weights"][y].to(z.dtype).log()                 # (B, M)
    if "scale_diag" in prior:
        return _diagonal_mixture_log_prob(z, log_weights, prior["means"][y], prior["scale_diag"][y])
    dist = MultivariateNormal(prior["means"][y].to(z.dtype), scale_tril=prior["scale_tril"][y].to(z.dtype))
    log_comp = dist.log_prob(z[:, :, None, :])                          # (S, B, M)
    return torch.logsumexp(log_comp + log_weights, dim=-1)


def _diagonal_mixture_log_prob(z: torch.Tensor, log_weights: torch.Tensor, means: torch.Tensor,
                               scales: torch.Tensor) -> torch.Tensor:
    """log sum_m w_m N(z | means_m, diag(scales_m^2)) for z (S, B, D) and (B, M[, D]) components -> (S, B).

    Thousands of components (one per training image): the squared distances come from matrix products
    in float64, a few rows of B at a time, never as an (S, B, M, D) temporary."""
    s, b, d = z.shape
    rows = max(1, MIXTURE_TERMS // max(1, s * means.shape[1]))
    out = []
    for start in range(0, b, rows):
        zb, mb = z[:, start:start + rows].double(), means[start:start + rows].double()   # (S, b, D), (b, M, D)
        inv_var = scales[start:start + rows].double().pow(-2)                              # (b, M, D)
        quad = (torch.einsum("sbd,bmd->sbm", zb * zb, inv_var) - 2 * torch.einsum("sbd,bmd->sbm", zb, mb * inv_var)
                + (mb * mb * inv_var).sum(-1))                                             # (S, b, M)
        log_norm = -inv_var.log().sum(-1) / 2 + d / 2 * math.log(2 * math.pi)              # (b, M)
        log_comp = -quad / 2 - log_norm + log_weights[start:start + rows].double()
        out.append(torch.logsumexp(log_comp, dim=-1))                                      # (S, b)
    return torch.cat(out, 1).to(z.dtype)


@torch.no_grad()
def estimate_nll(model: CVAE, x: torch.Tensor, y: torch.Tensor, *, k: int = 1000,
                 priors: dict[str, dict[str, torch.Tensor] | None] | None = None, seed: int = 0,
                 progress: bool = True) -> dict[str, dict[str, Any]]:
    """ELBO and importance-sampled -log p(x|y) per image, averaged over images x (N, C, H, W).

    ``priors`` names the priors to score (``None`` is the training prior); all share one set of
    importance samples and decoder passes.
    """
    if k < 1:
        raise ValueError(f"k (importance samples) must be >= 1, got {k}")
    priors = {"training_prior": None} if priors is None else priors
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    batch = max(1, MAX_ROWS // k)
    sums = {name: [0.0, 0.0] for name in priors}  # (sum of -log p(x|y), sum of ELBO)
    with progress_bar(x.shape[0], f"-log p(x|y), k={k}", progress) as bar:
        for start in range(0, x.shape[0], batch):
            xb, yb = x[start:start + batch], y[start:start + batch]
            mu, logvar = model.encode(xb, yb)                                    # (B, D)
            std = (0.5 * logvar).exp()
            eps = torch.randn((k, *mu.shape), generator=generator).to(mu.device)  # (S, B, D), drawn on the CPU
            z = mu + std * eps
            logits = model.decode_logits(z.flatten(0, 1), yb.repeat(k))         # (S*B, C, H, W)
            log_px = -model.recon_nll(logits, xb.repeat(k, 1, 1, 1)).view(k, -1)  # (S, B)
            log_q = Normal(mu, std).log_prob(z).sum(-1)                         # (S, B)
            for name, prior in priors.items():
                log_w = log_px + prior_log_prob(model, prior, z, yb) - log_q    # (S, B)
                sums[name][0] -= float((torch.logsumexp(log_w, 0) - math.log(k)).sum())
                sums[name][1] += float(log_w[0].sum())
            bar.advance(xb.shape[0])
    n = x.shape[0]
    return {name: {"nll": nll / n, "elbo": elbo / n, "k": k, "images": n} for name, (nll, elbo) in sums.items()}
