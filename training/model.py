"""The conditional VAE: config, encoder q(z|x,y), decoder p(x|z,y), prior p(z|y) and the loss.

Kingma & Welling (2014) give the ELBO and the reparameterisation; Sohn, Lee & Yan (2015) the
conditional form with a label-conditioned prior. Everything is sized from ``image_shape`` and
``num_classes``: nothing assumes 28x28 or ten classes.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from cvae_sdk.backends import ARCHS, UPSAMPLES  # the one list of each, shared with TrainConfig

Arch = Literal["dense", "conv", "mlp"]
Upsample = Literal["subpixel", "transpose"]
PriorKind = Literal["learned", "standard"]
Likelihood = Literal["bernoulli", "gaussian"]
MIN_SIGMA2 = 1e-4       # the Gaussian likelihood's variance floor: a pixel error of 0.01 on [0, 1]
SIGMA_MOMENTUM = 0.05   # the running variance's step towards each training batch's error


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of one CVAE; saved in every checkpoint and exported artifact."""

    image_shape: tuple[int, int, int]  # (C, H, W)
    num_classes: int
    latent_dim: int = 16
    arch: Arch = "conv"
    hidden: int = 512
    conv_channels: int = 32
    upsample: Upsample = "subpixel"  # how the conv decoder doubles its resolution (ConvDecoder)
    doublings: int = 2               # how often it doubles its resolution (and the conv encoder halves it)
    prior: PriorKind = "learned"
    likelihood: Likelihood = "bernoulli"

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_shape", tuple(int(s) for s in self.image_shape))
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {self.arch!r}")
        if self.upsample not in UPSAMPLES:
            raise ValueError(f"upsample must be one of {UPSAMPLES}, got {self.upsample!r}")
        if self.prior not in ("learned", "standard"):
            raise ValueError(f"prior must be 'learned' or 'standard', got {self.prior!r}")
        if self.likelihood not in ("bernoulli", "gaussian"):
            raise ValueError(f"likelihood must be 'bernoulli' or 'gaussian', got {self.likelihood!r}")
        if self.latent_dim < 1 or self.num_classes < 1 or self.hidden < 1:
            raise ValueError("latent_dim, num_classes and hidden must all be >= 1")
        if self.doublings < 2:
            raise ValueError(f"doublings must be >= 2, got {self.doublings}")

    @property
    def num_pixels(self) -> int:
        c, h, w = self.image_shape
        return c * h * w

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Configs saved before ``upsample`` existed had transposed convolutions."""
        return cls(**{"upsample": "transpose", **data})


# --- encoders q(z | x, y) ------------------------------------------------------------------------

class MlpEncoder(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(cfg.num_pixels + cfg.num_classes, cfg.hidden), nn.ReLU(),
            nn.Linear(cfg.hidden, cfg.hidden), nn.ReLU(),
            nn.Linear(cfg.hidden, 2 * cfg.latent_dim),
        )

    def forward(self, x: torch.Tensor, y_onehot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.cat([x.flatten(1), y_onehot], dim=1)  # (B, C*H*W + K)
        mu, logvar = self.net(h).chunk(2, dim=1)         # (B, D) each
        return mu, logvar


class ConvEncoder(nn.Module):
    """Stride-2 convolutions (``doublings`` of them) over the image with the label broadcast as extra channels."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        c, h, w = cfg.image_shape
        ch = cfg.conv_channels
        self.convs = nn.Sequential(
            nn.Conv2d(c + cfg.num_classes, ch, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(ch, 2 * ch, 4, stride=2, padding=1), nn.ReLU(),
            *itertools.chain.from_iterable((nn.Conv2d(2 * ch, 2 * ch, 4, stride=2, padding=1), nn.ReLU())
                                           for _ in range(cfg.doublings - 2)),
        )
        flat = 2 * ch * (h >> cfg.doublings) * (w >> cfg.doublings)  # each 4x4 stride-2 conv floors the side's half
        self.head = nn.Sequential(
            nn.Linear(flat + cfg.num_classes, cfg.hidden), nn.ReLU(),
            nn.Linear(cfg.hidden, 2 * cfg.latent_dim),
        )

    def forward(self, x: torch.Tensor, y_onehot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, _, h, w = x.shape
        y_maps = y_onehot[:, :, None, None].expand(b, -1, h, w)    # (B, K, H, W)
        feats = self.convs(torch.cat([x, y_maps], dim=1)).flatten(1)  # (B, 2ch * H/2^d * W/2^d)
        mu, logvar = self.head(torch.cat([feats, y_onehot], dim=1)).chunk(2, dim=1)
        return mu, logvar


# --- decoders p(x | z, y): return logits shaped (B, C, H, W) -------------------------------------

class LatentLabelLinear(nn.Module):
    """A Linear on [z, y] computed as z W_z^T + y W_y^T + b: the same math with no Concat.

    The exported graph then holds two Gemms and an Add instead of Concat(z, y), whose CUDA kernel
    stages input pointers in a host buffer that a captured CUDA graph would replay stale.
    Checkpoints from before the split (one ``weight`` of shape (out, D + K)) load unchanged.
    """

    def __init__(self, latent_dim: int, num_classes: int, out_features: int) -> None:
        super().__init__()
        joint = nn.Linear(latent_dim + num_classes, out_features)  # nn.Linear's initialisation
        self.z_weight = nn.Parameter(joint.weight.detach()[:, :latent_dim].clone())  # (out, D)
        self.y_weight = nn.Parameter(joint.weight.detach()[:, latent_dim:].clone())  # (out, K)
        self.bias = nn.Parameter(joint.bias.detach().clone())                        # (out,)

    def forward(self, z: torch.Tensor, y_onehot: torch.Tensor) -> torch.Tensor:
        return F.linear(z, self.z_weight, self.bias) + F.linear(y_onehot, self.y_weight)  # (B, out)

    def _load_from_state_dict(self, state: dict[str, Any], prefix: str, *args: Any) -> None:
        joint = state.pop(prefix + "weight", None)
        if joint is not None:
            d = self.z_weight.shape[1]
            state[prefix + "z_weight"], state[prefix + "y_weight"] = joint[:, :d], joint[:, d:]
        super()._load_from_state_dict(state, prefix, *args)


class MlpDecoder(nn.Module):
    """(z, y) -> hidden -> hidden -> pixels: Gemms only, the form onnxruntime runs near the CPU's peak."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.image_shape = cfg.image_shape
        self.input = LatentLabelLinear(cfg.latent_dim, cfg.num_classes, cfg.hidden)
        self.net = nn.Sequential(
            nn.ReLU(),
            nn.Linear(cfg.hidden, cfg.hidden), nn.ReLU(),
            nn.Linear(cfg.hidden, cfg.num_pixels),
        )

    def forward(self, z: torch.Tensor, y_onehot: torch.Tensor) -> torch.Tensor:
        logits = self.net(self.input(z, y_onehot))  # (B, C*H*W)
        return logits.view(-1, *self.image_shape)   # (B, C, H, W)

    def _load_from_state_dict(self, state: dict[str, Any], prefix: str, *args: Any) -> None:
        _rename_legacy_keys(state, prefix, {"net.0.": "input.", "net.2.": "net.1.", "net.4.": "net.3."})
        super()._load_from_state_dict(state, prefix, *args)


def _coarse_map_layers(cfg: ModelConfig) -> tuple[tuple[int, int, int], LatentLabelLinear, nn.Sequential]:
    """The conv decoders' start: [z, y] -> hidden -> a (2ch, ceil(H/2^d), ceil(W/2^d)) map, flattened."""
    _, h, w = cfg.image_shape
    scale = 2 ** cfg.doublings
    base = (2 * cfg.conv_channels, math.ceil(h / scale), math.ceil(w / scale))
    first = LatentLabelLinear(cfg.latent_dim, cfg.num_classes, cfg.hidden)  # first: seeded init draws in order
    fc = nn.Sequential(nn.ReLU(), nn.Linear(cfg.hidden, int(math.prod(base))), nn.ReLU())
    return base, first, fc


class ConvDecoder(nn.Module):
    """Linear to a (2ch, ceil(H/2^d), ceil(W/2^d)) map, doubled d times in resolution (d: the config's
    ``doublings``, two by default), cropped to (H, W); the steps between the first and the last keep ch channels.

    ``upsample="subpixel"`` (the default) doubles with a 3x3 convolution to four times the channels
    and a pixel shuffle (Shi et al., 2016; ONNX Conv + DepthToSpace): each output pixel sees a 3x3
    window of the coarser map, and onnxruntime runs Conv in its blocked layout near the CPU's GEMM
    rate. ``"transpose"`` uses 4x4 stride-2 transposed convolutions (each output pixel sees 2x2),
    which onnxruntime runs at about half that rate; older runs and artifacts have it.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        c, ch = cfg.image_shape[0], cfg.conv_channels
        self.image_shape = cfg.image_shape
        self.base, self.input, self.fc = _coarse_map_layers(cfg)
        middle = range(cfg.doublings - 2)
        if cfg.upsample == "subpixel":
            self.deconvs = nn.Sequential(
                nn.Conv2d(2 * ch, 4 * ch, 3, padding=1), nn.PixelShuffle(2), nn.ReLU(),
                *itertools.chain.from_iterable(
                    (nn.Conv2d(ch, 4 * ch, 3, padding=1), nn.PixelShuffle(2), nn.ReLU()) for _ in middle),
                nn.Conv2d(ch, 4 * c, 3, padding=1), nn.PixelShuffle(2),
            )
        else:
            self.deconvs = nn.Sequential(
                nn.ConvTranspose2d(2 * ch, ch, 4, stride=2, padding=1), nn.ReLU(),
                *itertools.chain.from_iterable(
                    (nn.ConvTranspose2d(ch, ch, 4, stride=2, padding=1), nn.ReLU()) for _ in middle),
                nn.ConvTranspose2d(ch, c, 4, stride=2, padding=1),
            )

    def forward(self, z: torch.Tensor, y_onehot: torch.Tensor) -> torch.Tensor:
        h = self.fc(self.input(z, y_onehot)).view(-1, *self.base)  # (B, 2ch, H/2^d, W/2^d)
        _, height, width = self.image_shape
        return self.deconvs(h)[:, :, :height, :width]              # (B, C, H, W)

    def _load_from_state_dict(self, state: dict[str, Any], prefix: str, *args: Any) -> None:
        _rename_legacy_keys(state, prefix, {"fc.0.": "input.", "fc.2.": "fc.1."})
        super()._load_from_state_dict(state, prefix, *args)


class FoldedSubpixelDecoder(nn.Module):
    """The sub-pixel :class:`ConvDecoder` in the form export writes: the same function, laid out for the engine.

    The trained decoder runs conv1 -> shuffle(2) -> ReLU -> conv2 -> shuffle(2). ReLU commutes with
    a shuffle, and conv2's 3x3 window on the 2x finer map covers at most one coarse pixel either
    side, so conv2 can run on the coarse map instead: 4ch -> 16 * C channels (one per output
    channel and 4x4 sub-pixel position), its weights placed by :meth:`fold`. No shuffle then sits
    between the convolutions (a sixth of onnxruntime's time at 1,024 rows, unfolded).

    The coarse map also leaves the Linear channels-last (``to_map``'s rows in (h, w, c) order) and
    the 4x4 sub-pixel outputs are placed by one channels-last reshuffle instead of DepthToSpace.
    onnxruntime runs int8 convolutions channels-last, so the layout changes it would otherwise add
    around them cancel against these: its int8 graph keeps one small transpose of the output.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        c, ch = cfg.image_shape[0], cfg.conv_channels
        self.image_shape = cfg.image_shape
        self.base, self.input, fc = _coarse_map_layers(cfg)
        self.to_map = fc[1]  # rows in (h, w, c) order
        self.conv1 = nn.Conv2d(2 * ch, 4 * ch, 3, padding=1)
        self.conv2 = nn.Conv2d(4 * ch, 16 * c, 3, padding=1)

    def forward(self, z: torch.Tensor, y_onehot: torch.Tensor) -> torch.Tensor:
        c, h, w = self.base
        rows = F.relu(self.to_map(F.relu(self.input(z, y_onehot))))   # (B, h*w*c)
        m = rows.view(-1, h, w, c).permute(0, 3, 1, 2)                  # (B, c, h, w)
        m = self.conv2(F.relu(self.conv1(m)))                           # (B, 16C, h, w): (C, 4, 4) per pixel
        channels, height, width = self.image_shape
        pixels = (m.permute(0, 2, 3, 1).reshape(-1, h, w, channels, 4, 4)  # (B, h, w, C, 4, 4)
                  .permute(0, 3, 1, 4, 2, 5).reshape(-1, channels, 4 * h, 4 * w))  # (B, C, 4h, 4w)
        return pixels[:, :, :height, :width]                            # (B, C, H, W)

    def _load_from_state_dict(self, state: dict[str, Any], prefix: str, *args: Any) -> None:
        """Files exported before the channels-last map hold ``fc.1`` with rows in (c, h, w) order."""
        c, h, w = self.base
        for suffix in ("weight", "bias"):
            old = state.pop(prefix + "fc.1." + suffix, None)
            if old is not None and prefix + "to_map." + suffix not in state:
                rows = old.reshape(c, h, w, -1).permute(1, 2, 0, 3).reshape(old.shape)
                state[prefix + "to_map." + suffix] = rows
        super()._load_from_state_dict(state, prefix, *args)

    @classmethod
    def fold(cls, decoder: nn.Module, cfg: ModelConfig) -> FoldedSubpixelDecoder:
        """The folded twin of a trained sub-pixel :class:`ConvDecoder` (equal outputs up to float rounding)."""
        if cfg.upsample != "subpixel":
            raise ValueError(f"only a sub-pixel decoder folds, this one upsamples by {cfg.upsample!r}")
        if cfg.doublings != 2:
            raise ValueError(f"only a decoder of two doublings folds, this one has {cfg.doublings}")
        trained = {k: v.detach() for k, v in decoder.state_dict().items()}
        w2, b2 = trained["deconvs.3.weight"], trained["deconvs.3.bias"]  # (4C, ch, 3, 3), (4C,)
        c, ch = w2.shape[0] // 4, w2.shape[1]
        phase0 = torch.arange(ch) * 4  # conv1's channel of (fine channel, phase 0); + 2 * row + column phase
        weight = torch.zeros(16 * c, 4 * ch, 3, 3)
        # conv2's output channel (cf, a2, b2) at fine phase (a, b) is the folded channel (cf, a, a2, b, b2)
        # (pixel_shuffle(4) order); a fine offset d from phase a is coarse offset (a + d) // 2, phase (a + d) % 2.
        for cf, a2, b2_, a, b, dy, dx in itertools.product(range(c), *[(0, 1)] * 4, *[(-1, 0, 1)] * 2):
            (ci, pa), (cj, pb) = divmod(a + dy, 2), divmod(b + dx, 2)
            weight[cf * 16 + a * 8 + a2 * 4 + b * 2 + b2_, phase0 + pa * 2 + pb, ci + 1, cj + 1] += \
                w2[cf * 4 + a2 * 2 + b2_, :, dy + 1, dx + 1]
        bias = b2.view(c, 1, 2, 1, 2).expand(c, 2, 2, 2, 2).reshape(-1)  # (16C,): (cf, a, a2, b, b2)
        folded = cls(cfg)
        folded.load_state_dict({**{k: v for k, v in trained.items() if k.startswith(("input.", "fc.1."))},
                                "conv1.weight": trained["deconvs.0.weight"], "conv1.bias": trained["deconvs.0.bias"],
                                "conv2.weight": weight, "conv2.bias": bias})  # fc.1 rows reordered on load
        return folded


def _rename_legacy_keys(state: dict[str, Any], prefix: str, renames: dict[str, str]) -> None:
    """Checkpoints written before the first layer became LatentLabelLinear: same tensors, new names."""
    for old, new in renames.items():
        for suffix in ("weight", "bias"):
            if prefix + old + suffix in state and prefix + new + suffix not in state:
                state[prefix + new + suffix] = state.pop(prefix + old + suffix)


# --- prior p(z | y) --------------------------------------------------------------------------------

class LabelPrior(nn.Module):
    """Diagonal Gaussian per label, learned jointly through the KL term, or fixed at N(0, I)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.learned = cfg.prior == "learned"
        shape = (cfg.num_classes, cfg.latent_dim)
        self.mean = nn.Parameter(torch.zeros(shape), requires_grad=self.learned)
        self.logvar = nn.Parameter(torch.zeros(shape), requires_grad=self.learned)

    def forward(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mean[y], self.logvar[y]  # (B, D) each


# --- the model and its loss ------------------------------------------------------------------------

@dataclass
class LossTerms:
    """Per-batch means, in nats per example."""

    loss: torch.Tensor     # recon + beta * kl: what the optimiser minimises
    recon: torch.Tensor    # -E_q log p(x | z, y)
    kl: torch.Tensor       # KL(q(z | x, y) || p(z | y))
    kl_per_dim: torch.Tensor  # (D,) batch mean of the KL of each latent dimension

    @property
    def neg_elbo(self) -> torch.Tensor:
        return self.recon + self.kl


class CVAE(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = MlpEncoder(cfg) if cfg.arch == "mlp" else ConvEncoder(cfg)
        self.decoder = ConvDecoder(cfg) if cfg.arch == "conv" else MlpDecoder(cfg)
        self.prior = LabelPrior(cfg)
        # Gaussian likelihood: one variance shared by all pixels, set to its optimum (see recon_nll).
        self.log_sigma2 = nn.Parameter(torch.zeros(()), requires_grad=False)

    def onehot(self, y: torch.Tensor) -> torch.Tensor:
        return F.one_hot(y, self.cfg.num_classes).to(torch.float32)  # (B, K)

    # encode and decode_logits return float32 even under bfloat16 autocast (training/precision.py), so every
    # loss built on them is a float32 sum
    def encode(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(x, self.onehot(y))
        return mu.float(), logvar.float()                                # (B, D) each

    def decode_logits(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.decoder(z, self.onehot(y)).float()  # (B, C, H, W)

    def decode(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Pixel means in [0, 1]: the generative path that export keeps."""
        return torch.sigmoid(self.decode_logits(z, y))

    def recon_nll(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """-log p(x | z, y) per example, shape (B,).

        The Gaussian likelihood is the optimal-sigma VAE (Rybkin, Daniilidis & Levine, 2021): one
        variance for every pixel, in training the batch's mean squared error (the value that maximises
        the likelihood, so the reconstruction term weighs as the decoder's own error says), kept as a
        running average in ``log_sigma2`` that evaluation uses. Bernoulli's fixed curvature (a variance
        near 1/4 at mid-grey) instead lets colour images' reconstructions stay blurred means.
        """
        if self.cfg.likelihood == "bernoulli":
            return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
        squared = (x - torch.sigmoid(logits)) ** 2                       # (B, C, H, W)
        if self.training:
            log_sigma2 = squared.mean().detach().clamp_min(MIN_SIGMA2).log()
            with torch.no_grad():
                self.log_sigma2.lerp_(log_sigma2, SIGMA_MOMENTUM)
        else:
            log_sigma2 = self.log_sigma2.detach()
        nll = 0.5 * (squared / log_sigma2.exp() + log_sigma2 + math.log(2 * math.pi))
        return nll.flatten(1).sum(1)

    def forward(self, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor,
                beta: float = 1.0) -> LossTerms:
        """Loss terms for images x (B, C, H, W), labels y (B,) and noise eps (B, D) ~ N(0, I), float32 sums
        under bfloat16 autocast too."""
        mu_q, logvar_q = self.encode(x, y)                               # (B, D)
        z = mu_q + (0.5 * logvar_q).exp() * eps                         # reparameterisation
        recon = self.recon_nll(self.decode_logits(z, y), x)              # (B,)
        mu_p, logvar_p = (t.float() for t in self.prior(y))              # (B, D)
        kl_dims = gaussian_kl(mu_q, logvar_q, mu_p, logvar_p)   # (B, D)
        kl = kl_dims.sum(1)
        return LossTerms((recon + beta * kl).mean(), recon.mean(), kl.mean(), kl_dims.mean(0))


def gaussian_kl(mu_q: torch.Tensor, logvar_q: torch.Tensor,
                mu_p: torch.Tensor, logvar_p: torch.Tensor) -> torch.Tensor:
    """Elementwise KL(N(mu_q, var_q) || N(mu_p, var_p)) between diagonal Gaussians."""
    return 0.5 * (logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p) ** 2) / logvar_p.exp() - 1.0)
