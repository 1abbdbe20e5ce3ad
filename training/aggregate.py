"""p(z|y) from the aggregate posterior after training: a Gaussian mixture per label.

Sampling from a prior that matches where the encoder actually put each label's codes avoids the
"prior holes" that make N(0, I) samples blurry or of the wrong class. By default the prior is the
aggregate posterior itself, q(z|y) = mean over the label's training images of q(z|x,y): one diagonal
Gaussian per image (:func:`aggregate_posterior`), the optimal prior for the trained encoder (Hoffman
& Johnson, 2016; VampPrior keeps a learned subset of the same terms, Tomczak & Welling, 2018).
``--aggregate-components M`` fits M full-covariance Gaussians per label to its codes by EM instead
(:func:`fit_aggregate_prior`). The result travels in the checkpoint and, through export, in the artifact.
"""

from __future__ import annotations

import math

import torch

from .model import CVAE

DRAWS_PER_IMAGE = 4
EM_ITERATIONS = 50
COVARIANCE_FLOOR = 1e-4


@torch.no_grad()
def aggregate_posterior(model: CVAE, x: torch.Tensor, y: torch.Tensor, budget: int, seed: int,
                        batch: int = 2048) -> dict[str, torch.Tensor]:
    """One Gaussian per training image per label: q(z|x,y)'s mean and standard deviation, equally weighted.

    Beyond ``budget`` images in all, each label keeps a seeded random share of its images (at least one).
    Labels with fewer images than the largest repeat theirs cyclically at weight 0, so every label has M
    components. Returns ``weights`` (K, M), ``means`` (K, M, D) and ``scale_diag`` (K, M, D), float64.
    """
    model.eval()
    mus, stds = [], []
    for start in range(0, x.shape[0], batch):
        mu, logvar = model.encode(x[start:start + batch], y[start:start + batch])  # (B, D)
        mus.append(mu.double().cpu())
        stds.append((0.5 * logvar).exp().double().cpu())
    mu_all, std_all, labels = torch.cat(mus), torch.cat(stds), y.cpu()             # (N, D), (N, D), (N,)
    generator = torch.Generator().manual_seed(seed + 2)
    keep = min(1.0, budget / max(1, labels.shape[0]))
    chosen = []
    for k in range(model.cfg.num_classes):
        rows = torch.nonzero(labels == k).flatten()
        if rows.numel() == 0:
            raise ValueError("a class has no training images; every class needs examples to fit its prior")
        rows = rows[torch.randperm(rows.numel(), generator=generator)[:max(1, int(rows.numel() * keep))]]
        chosen.append(rows)
    m = max(rows.numel() for rows in chosen)
    weights = torch.zeros((len(chosen), m), dtype=torch.float64)
    index = torch.empty((len(chosen), m), dtype=torch.long)
    for k, rows in enumerate(chosen):
        weights[k, :rows.numel()] = 1.0 / rows.numel()
        index[k] = rows[torch.arange(m) % rows.numel()]                          # padding repeats, at weight 0
    return {"weights": weights, "means": mu_all[index], "scale_diag": std_all[index]}


@torch.no_grad()
def fit_aggregate_prior(model: CVAE, x: torch.Tensor, y: torch.Tensor, components: int,
                        seed: int, batch: int = 2048) -> dict[str, torch.Tensor]:
    """Per-label mixture of ``components`` full-covariance Gaussians fitted to z ~ q(z|x,y).

    Returns ``weights`` (K, M), ``means`` (K, M, D) and ``scale_tril`` (K, M, D, D), float64.
    """
    model.eval()
    generator = torch.Generator().manual_seed(seed + 2)
    codes = []
    for start in range(0, x.shape[0], batch):
        mu, logvar = model.encode(x[start:start + batch], y[start:start + batch])  # (B, D)
        mu, std = mu.double().cpu(), (0.5 * logvar).exp().double().cpu()
        eps = torch.randn((DRAWS_PER_IMAGE, *mu.shape), generator=generator, dtype=torch.float64)
        codes.append((mu + std * eps).transpose(0, 1))  # (B, S, D)
    z_all = torch.cat(codes)                              # (N, S, D)
    labels = y.cpu()
    fits = [_fit_mixture(z_all[labels == k].reshape(-1, z_all.shape[-1]), components, generator)
            for k in range(model.cfg.num_classes)]
    weights, means, covs = (torch.stack(parts) for parts in zip(*fits, strict=True))
    return {"weights": weights, "means": means, "scale_tril": torch.linalg.cholesky(covs)}


def _fit_mixture(z: torch.Tensor, m: int, generator: torch.Generator
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """EM for a full-covariance Gaussian mixture on z (N, D); m = 1 is the closed form."""
    n, d = z.shape
    if n == 0:
        raise ValueError("a class has no training images; every class needs examples to fit its prior")
    floor = COVARIANCE_FLOOR * torch.eye(d, dtype=z.dtype)
    if m == 1:
        return torch.ones(1, dtype=z.dtype), z.mean(0, keepdim=True), (_cov(z) + floor)[None]
    means = z[torch.randperm(n, generator=generator)[:m]].clone()  # (M, D)
    covs = (_cov(z) + floor).expand(m, d, d).clone()                # (M, D, D)
    weights = torch.full((m,), 1.0 / m, dtype=z.dtype)
    for _ in range(EM_ITERATIONS):
        log_r = _gaussian_log_prob(z, means, covs) + weights.log()  # (N, M)
        resp = (log_r - log_r.logsumexp(1, keepdim=True)).exp()
        counts = resp.sum(0) + 1e-9                                  # (M,)
        weights = counts / n
        means = (resp.T @ z) / counts[:, None]
        centred = (z[None] - means[:, None, :]) * resp.T[:, :, None].sqrt()  # (M, N, D), weighted
        covs = centred.transpose(1, 2) @ centred / counts[:, None, None] + floor
    return weights, means, covs


def _gaussian_log_prob(z: torch.Tensor, means: torch.Tensor, covs: torch.Tensor) -> torch.Tensor:
    """log N(z_n | mean_m, cov_m) for z (N, D), means (M, D), covs (M, D, D) -> (N, M), via Cholesky."""
    d = z.shape[1]
    chol = torch.linalg.cholesky(covs)                                          # (M, D, D)
    centred = (z[None] - means[:, None, :]).transpose(1, 2)                     # (M, D, N)
    white = torch.linalg.solve_triangular(chol, centred, upper=False)          # (M, D, N)
    log_det = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)    # (M,)
    return (-0.5 * (white ** 2).sum(1) - 0.5 * log_det[:, None] - 0.5 * d * math.log(2 * math.pi)).T


def _cov(z: torch.Tensor) -> torch.Tensor:
    centred = z - z.mean(0, keepdim=True)
    return centred.T @ centred / max(1, z.shape[0] - 1)
