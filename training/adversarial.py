"""The adversarial phase: after ELBO training, the decoder is fine-tuned to draw sharp images, at the same cost.

A decoder trained by likelihood alone draws each pixel's mean given z: where a stroke's or an edge's
exact place is uncertain, that mean is a soft grey halo, in reconstructions and samples alike, and
no prior or temperature removes it. The phase freezes the encoder and the prior (so the
aggregate-posterior prior fitted to the encoder's codes stays valid) and fine-tunes only the
decoder on its reconstructions of the training images, with the reconstruction loss plus the
non-saturating GAN loss (Goodfellow et al., 2014) from a small label-conditioned patch
discriminator with no normalisation (a spectrally normalised one with the hinge loss could not tell
reconstructions from real images, benchmarks/quality.md); with ``PRIOR_FAKES`` the discriminator
also judges samples from the prior the artifact ships (as VAE-GAN does: Larsen et al., 2016). The
GAN term's weight is set every step as in VQGAN (Esser et al., 2021): the ratio of the two losses'
gradient norms at the decoder's last layer, times ``adversarial_weight``. The decoder's shape does
not change, so the exported graph and its FLOPs are the same.

Every phase epoch checks the samples the run would ship, drawn from the prior the artifact ships
with the same noise each time: their label fidelity (the run's classifier) and their diversity
(mean pairwise distance within a label) against the decoder before the phase. An epoch that loses
more than ``MAX_FIDELITY_LOSS`` of fidelity or ``MAX_DIVERSITY_LOSS`` of diversity (a discriminator
that drops modes), or whose loss is not finite, ends the phase with the decoder of the epoch before,
and says so on one line.

The phase's state (decoder, discriminator, both optimisers, its random stream and the position in
its epoch) is saved in ``adversarial.pt`` after every phase epoch and on Ctrl-C, so ``--resume``
continues it exactly; at its end the sharpened decoder goes into ``best.pt`` (with the phase's
record under ``"adversarial"``) and ``adversarial.pt`` is removed. A phase given a clock (a planned
one, training/clock.py) starts no epoch that would end past the run's deadline, judged by its last
epoch (or, before any, by the estimate it was given). Under torchrun the phase runs on
rank 0 alone (it takes about a minute on 2 cores), while the other ranks wait.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from cvae_sdk.latents import transform
from cvae_sdk.progress import progress_bar
from cvae_sdk.quality import mean_pairwise_distance

from .augment import augment_batch
from .checkpoint import BEST, EpochPosition, load_checkpoint, save_checkpoint
from .clock import RunClock
from .export import choose_prior
from .model import CVAE
from .precision import adam, autocast

PHASE_FILE = "adversarial.pt"
PHASE_VERSION = 2             # the discriminator's form in adversarial.pt: 1 had spectral normalisation
BATCH_SIZE = 64
LR, BETAS = 2e-4, (0.5, 0.9)
DISC_WIDTH = 64
MAX_ADAPTIVE_WEIGHT = 1e4
MAX_FIDELITY_LOSS = 0.03      # label fidelity the samples may lose against the decoder before the phase
MAX_DIVERSITY_LOSS = 0.10     # and the share of their diversity
# The discriminator may also judge samples decoded from the prior (VAE-GAN's third term), to push images decoded
# between the encoder's codes towards real ones; it changed nothing measurable (benchmarks/quality.md), so it
# stays off and the phase costs half.
PRIOR_FAKES = False
GAN_LOSS = "non-saturating"  # the phase's GAN loss, recorded in its summary
# MSGAN's mode-seeking term (Mao et al., 2019) in the decoder's GAN loss, with this weight (0: off). At 0.1 it raised
# diversity but drew a worse FD on photos (14.8x against 11.7x, where two runs of the default phase differ by 0.03x),
# and at 1 it cost label fidelity in the first epoch (benchmarks/quality.md), so it stays off.
MODE_SEEKING = 0.0
# With AUGMENT the phase shifts or mirrors its images as ELBO training did (--augment): mirrored colour images drew
# no better on photos (FD 10.416x against 10.263x) and worse on photos64 (29.875x against 28.259x, worst class
# 0.458 against 0.492; results/phase_augment.jsonl), so the phase sees the images as they are.
AUGMENT = False
# An exponential moving average of the decoder's weights over the phase's steps, with this decay (0: off): the
# decoder it keeps, checks and ships is the average instead of the last step's weights (Yazici et al., 2019). On
# fixed trained weights it took mnist-3k's FD from 2.445x to 2.375x (0.98) and kept photos64's level (29.2x against
# 28.6x; 0.995 was smoother and lost FD), but a whole default run of photos64 with it drew 31.3x against the own-data
# row's 28.3x (benchmarks/quality.md), so it stays off.
EMA_DECAY = 0.0
SEED_OFFSET = 6               # the phase's random stream: the run's seed plus this
CHECK_PER_CLASS = 100         # samples of each label the health check draws
CHECK_SEED_OFFSET = 7         # and their fixed noise: the run's seed plus this


class PatchDiscriminator(nn.Module):
    """Real/fake logits per patch of an image (B, C, H, W) given its label, which enters as K planes; ``width``
    channels in the first layer, twice that in the second.

    The label planes are one-hot and constant, so the first layer's response to them is one map per
    label: it is computed once per call for all K labels (one convolution of a plane of ones) and added
    to the image's response, where convolving B x K constant planes cost the most of that layer.
    """

    def __init__(self, channels: int, classes: int, width: int) -> None:
        super().__init__()
        self.channels, self.classes = channels, classes
        self.net = nn.Sequential(
            nn.Conv2d(channels + classes, width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * width, 1, 3, 1, 1))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        first = self.net[0]
        assert isinstance(first, nn.Conv2d)
        weight, bias = first.weight, first.bias                                 # (Wd, C + K, 4, 4), (Wd,)
        image = F.conv2d(x, weight[:, :self.channels], bias, 2, 1)              # (B, Wd, H/2, W/2)
        per_label = weight[:, self.channels:].transpose(0, 1).reshape(-1, 1, *weight.shape[2:])  # (K * Wd, 1, 4, 4)
        ones = x.new_ones((1, 1, *x.shape[2:]))                                 # (1, 1, H, W)
        maps = F.conv2d(ones, per_label, None, 2, 1).reshape(self.classes, -1)  # (K, Wd * H/2 * W/2)
        onehot = F.one_hot(y, self.classes).to(maps.dtype)                      # (B, K)
        labels = (onehot @ maps).reshape(image.shape)  # (B, Wd, H/2, W/2); a matmul's gradient sums in order
        return self.net[1:](image + labels)                                     # (B, 1, H/4, W/4)


def adaptive_weight(rec: torch.Tensor, gan: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """||d rec / d last|| / ||d gan / d last||: the GAN term pulls on the decoder as hard as the reconstruction."""
    g_rec = torch.autograd.grad(rec, last, retain_graph=True)[0]
    g_gan = torch.autograd.grad(gan, last, retain_graph=True)[0]
    return (g_rec.norm() / (g_gan.norm() + 1e-4)).clamp(0.0, MAX_ADAPTIVE_WEIGHT).detach()


class AdversarialPhase:
    """The phase for one run: built from the run's best checkpoint ``best`` (or restored from ``adversarial.pt``),
    run to its end.

    ``health(images, labels)`` returns the label fidelity and diversity of samples (N, C, H, W) of
    labels (N,): the phase draws them from the prior the artifact ships, with the same noise every
    epoch (:meth:`check_health`); ``interrupted()`` says whether Ctrl-C was pressed; ``on_epoch``
    (if given) gets every kept phase epoch's record; with a ``clock`` it starts no epoch that would end
    past the clock's deadline, taking ``first_epoch_seconds`` as the first epoch's length.
    """

    def __init__(self, model: CVAE, best: dict[str, Any], x: torch.Tensor, y: torch.Tensor, epochs: int,
                 weight: float, seed: int, run_dir: Path,
                 health: Callable[[np.ndarray, np.ndarray], dict[str, float]],
                 interrupted: Callable[[], bool], on_epoch: Callable[[dict[str, Any]], None] | None = None,
                 precision: str = "fp32", augment: str = "none", clock: RunClock | None = None,
                 first_epoch_seconds: float = 0.0) -> None:
        self.model, self.x, self.y = model, x, y                       # x (N, C, H, W), y (N,) on the device
        self.augment = augment if AUGMENT else "none"                  # "shift", "flip" or "none"
        self.precision = precision                                     # the steps' arithmetic (training/precision.py)
        self.epochs, self.weight, self.run_dir = epochs, weight, run_dir
        self.health, self.interrupted, self.on_epoch = health, interrupted, on_epoch
        self.clock, self.first_epoch_seconds = clock, first_epoch_seconds
        self.device = x.device
        self.best = best                                                # the run's best checkpoint, as finish() left it
        self.from_epoch = int(best["epoch"])
        model.load_state_dict(best["model"])
        self.prior_fakes = PRIOR_FAKES
        self.mode_seeking = MODE_SEEKING
        self.prior = choose_prior(model, best, "auto")  # the prior the artifact will ship
        self.check_y = np.repeat(np.arange(model.cfg.num_classes), CHECK_PER_CLASS)   # (K * n,)
        check = np.random.default_rng(seed + CHECK_SEED_OFFSET)
        self.check_noise = (check.random(self.check_y.shape[0]),                      # (K * n,) components
                            check.standard_normal((self.check_y.shape[0], model.cfg.latent_dim),
                                                  dtype=np.float32))                  # (K * n, D)
        with torch.random.fork_rng(devices=[]):  # a seeded discriminator, without touching the global RNG
            torch.manual_seed(seed + SEED_OFFSET)
            self.disc = PatchDiscriminator(x.shape[1], model.cfg.num_classes, DISC_WIDTH).to(self.device)
        self.decoder = list(model.decoder.parameters())
        self.last = [p for p in self.decoder if p.dim() >= 2][-1]      # the decoder's last layer's weights
        self.opt_g = adam(self.decoder, LR, BETAS)
        self.opt_d = adam(self.disc.parameters(), LR, BETAS)
        self.generator = torch.Generator().manual_seed(seed + SEED_OFFSET)
        self.ema = [p.detach().clone() for p in self.decoder] if EMA_DECAY > 0 else None
        self.epoch = 0
        self.history: list[dict[str, Any]] = []
        self.position: EpochPosition | None = None
        self.reference: dict[str, float] = {}
        self.kept = _copy(best["model"])  # the weights of the last healthy phase epoch (or of before the phase)
        saved = self._saved()
        if saved is not None:
            self.model.load_state_dict(saved["model"])
            self.disc.load_state_dict(saved["disc"])
            self.opt_g.load_state_dict(saved["opt_g"])
            self.opt_d.load_state_dict(saved["opt_d"])
            self.generator.set_state(saved["rng"])
            self.epoch, self.history = int(saved["epoch"]), list(saved["history"])
            if self.clock is not None and saved.get("run_seconds") is not None:
                self.clock.restore(float(saved["run_seconds"]))
            self.reference = {k: float(v) for k, v in saved["reference"].items()}
            self.kept = saved["kept"]
            if self.ema is not None and saved.get("ema") is not None:
                for average, value in zip(self.ema, saved["ema"], strict=True):
                    average.copy_(value)
            self.position = EpochPosition.from_state(saved["partial"]) if saved["partial"] is not None else None

    def _saved(self) -> dict[str, Any] | None:
        """``adversarial.pt`` if it continues this run's best checkpoint (a longer resumed run may have a newer one)."""
        path = self.run_dir / PHASE_FILE
        if not path.is_file():
            return None
        saved = load_checkpoint(path)
        current = saved.get("version", 1) == PHASE_VERSION  # an older discriminator's phase starts again
        return saved if current and int(saved["from_epoch"]) == self.from_epoch else None

    def state(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "disc": self.disc.state_dict(), "opt_g": self.opt_g.state_dict(),
                "opt_d": self.opt_d.state_dict(), "rng": self.generator.get_state(), "epoch": self.epoch,
                "history": self.history, "reference": self.reference, "from_epoch": self.from_epoch,
                "version": PHASE_VERSION, "run_seconds": None if self.clock is None else self.clock.spent(),
                "kept": self.kept, "ema": self.ema,
                "partial": self.position.to_state() if self.position is not None else None}

    def run(self, progress: bool) -> dict[str, Any]:
        """Train the decoder for the planned phase epochs (or until a health check fails); return the record."""
        if not self.reference:
            self.reference = self.check_health()
        stopped, timed_out = None, False
        while self.epoch < self.epochs and stopped is None:
            if self.out_of_time():
                timed_out = True
                if progress:
                    print(f"note: the adversarial phase ends after {self.epoch} of its {self.epochs} epochs, at the "
                          "run's time limit (--time-limit)", file=sys.stderr, flush=True)
                break
            started = time.monotonic()
            record = self.run_epoch(progress)
            record["wall_seconds"] = time.monotonic() - started
            stopped = self.unhealthy(record)
            if stopped is not None:  # the decoder of the epoch before (or before the phase) is loaded below
                print(f"warning: {stopped}", file=sys.stderr, flush=True)
                break
            self.epoch += 1
            self.history.append(record)
            with self.averaged():
                self.kept = _copy(self.model.state_dict())
            save_checkpoint(self.state(), self.run_dir / PHASE_FILE)
            if self.on_epoch is not None:
                self.on_epoch(record)
            if progress:
                print(_summary_line(record, self.epochs, self.reference), file=sys.stderr, flush=True)
        self.model.load_state_dict(self.kept)  # the last healthy epoch's decoder (its average, with EMA_DECAY)
        summary = {"epochs": self.epoch, "planned_epochs": self.epochs, "weight": self.weight, "loss": GAN_LOSS,
                   "mode_seeking": self.mode_seeking, "ema_decay": EMA_DECAY,
                   "precision": self.precision, "augment": self.augment,
                   "fakes": ["reconstructions", *(["prior samples"] if self.prior_fakes else [])],
                   "reference": self.reference, "history": self.history, "stopped": stopped,
                   "time_limited": timed_out,
                   "seconds": float(sum(r["seconds"] for r in self.history))}
        save_checkpoint({**self.best, "model": self.model.state_dict(), "adversarial": summary}, self.run_dir / BEST)
        (self.run_dir / PHASE_FILE).unlink(missing_ok=True)
        return summary

    def out_of_time(self) -> bool:
        """Whether the next epoch, as long as the last one (or the estimate before any), would end past the deadline."""
        if self.clock is None:
            return False
        last = self.history[-1] if self.history else None
        epoch_seconds = self.first_epoch_seconds if last is None else last.get("wall_seconds", last["seconds"])
        return self.clock.time_left() < epoch_seconds

    def unhealthy(self, record: dict[str, Any]) -> str | None:
        """Why this epoch's decoder is not kept, or None."""
        epoch = self.epoch + 1
        undo = "the decoder of the epoch before is kept; lower --adversarial-weight, or pass --adversarial-epochs 0"
        if not math.isfinite(record["recon"]) or not math.isfinite(record["disc"]):
            return f"the adversarial phase diverged at its epoch {epoch} (non-finite loss); {undo}"
        lost = self.reference["label_fidelity"] - record["label_fidelity"]
        if lost > MAX_FIDELITY_LOSS:
            return (f"the adversarial phase lost label fidelity at its epoch {epoch} "
                    f"({self.reference['label_fidelity']:.3f} -> {record['label_fidelity']:.3f}); {undo}")
        if record["diversity"] < (1 - MAX_DIVERSITY_LOSS) * self.reference["diversity"]:
            return (f"the adversarial phase lost sample diversity at its epoch {epoch} "
                    f"({self.reference['diversity']:.3f} -> {record['diversity']:.3f}, dropping modes); {undo}")
        return None

    def run_epoch(self, progress: bool) -> dict[str, Any]:
        n = self.x.shape[0]
        if self.position is None:
            sums = [0.0] * 4                                                     # recon, gan, disc, weight
            self.position = EpochPosition(torch.randperm(n, generator=self.generator), sums)
        at = self.position
        steps = math.ceil(n / BATCH_SIZE)
        self.model.train()
        self.model.encoder.eval()
        started = time.perf_counter() - at.seconds
        with progress_bar(steps, f"adversarial {self.epoch + 1}/{self.epochs}", progress) as bar:
            bar.advance(at.step)
            while at.step < steps:
                if self.interrupted():
                    save_checkpoint(self.state(), self.run_dir / PHASE_FILE)
                    raise KeyboardInterrupt
                losses = self.step(at.perm[at.step * BATCH_SIZE:(at.step + 1) * BATCH_SIZE])
                at.sums = [a + b for a, b in zip(at.sums, losses, strict=True)]
                at.step, at.seconds = at.step + 1, time.perf_counter() - started
                if not all(math.isfinite(v) for v in losses):
                    break
                bar.advance(1, f"recon {at.sums[0] / at.step:.2f} gan {at.sums[1] / at.step:.3f} "
                               f"disc {at.sums[2] / at.step:.3f}")
        self.position = None
        record = dict(zip(("recon", "gan", "disc", "weight"), (s / at.step for s in at.sums), strict=True))
        self.model.eval()
        with self.averaged():
            health = self.check_health()
        return {"adversarial_epoch": self.epoch + 1, **record, **health, "seconds": at.seconds}

    @contextlib.contextmanager
    def averaged(self) -> Iterator[None]:
        """The decoder holds its weights' moving average inside the block (with EMA_DECAY; else nothing changes)."""
        if self.ema is None:
            yield
            return
        with torch.no_grad():
            steps = [p.detach().clone() for p in self.decoder]
            for p, average in zip(self.decoder, self.ema, strict=True):
                p.copy_(average)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, value in zip(self.decoder, steps, strict=True):
                    p.copy_(value)

    def check_health(self) -> dict[str, float]:
        """The label fidelity and diversity of the samples the decoder draws now from the shipped prior."""
        y = torch.from_numpy(self.check_y)                                                    # (K * n,)
        u, eps = self.check_noise
        z = self.prior_sample(y, (torch.from_numpy(u), torch.from_numpy(eps)))              # (K * n, D)
        with torch.no_grad():
            images = self.model.decode(z, y.to(self.device)).cpu().numpy()                    # (K * n, C, H, W)
        return self.health(images, self.check_y)

    def step(self, idx: torch.Tensor) -> tuple[float, float, float, float]:
        """One discriminator and one decoder update on the batch ``idx`` (B,); returns the four losses, with a
        NaN reconstruction loss where a non-finite loss stopped the step."""
        eps = torch.randn((idx.shape[0], self.model.cfg.latent_dim), generator=self.generator)  # (B, D), on the CPU
        eps_prior = self.draw_prior_noise(idx.shape[0]) if self.prior_fakes else None
        idx = idx.to(self.device)
        x = augment_batch(self.x[idx], self.augment, self.generator)                          # (B, C, H, W)
        y = self.y[idx]                                                                       # (B,)
        with torch.no_grad():
            mu, logvar = self.model.encode(x, y)                                              # (B, D), frozen
            z = mu + (0.5 * logvar).exp() * eps.to(self.device)
        with autocast(self.precision, self.device):
            logits = self.model.decode_logits(z, y)                                           # (B, C, H, W) float32
        fakes = [torch.sigmoid(logits)]
        if self.prior_fakes:  # samples from the prior too: the decoder learns to draw sharp images from its holes
            with autocast(self.precision, self.device):
                fakes.append(self.model.decode(self.prior_sample(y, eps_prior), y))
        d_loss = F.softplus(-self.judge(x, y)).mean() + sum(                                # non-saturating
            F.softplus(self.judge(fake.detach(), y)).mean() for fake in fakes) / len(fakes)
        if not torch.isfinite(d_loss):
            return math.nan, math.nan, d_loss.item(), math.nan  # neither network is updated
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()
        rec = self.model.recon_nll(logits, x).mean()
        self.disc.requires_grad_(False)  # the decoder's update needs no gradient for the discriminator's weights
        try:
            gan = torch.stack([F.softplus(-self.judge(fake, y)).mean() for fake in fakes]).mean()
            weight = adaptive_weight(rec, gan, self.last)
            # mode seeking scales with the GAN term, as MSGAN adds it to the generator's loss
            seek = self.mode_seeking * mode_seeking(fakes[0], z, y) if self.mode_seeking > 0 else 0.0
            loss = rec + self.weight * weight * (gan + seek)
            if not torch.isfinite(loss):
                return math.nan, gan.item(), d_loss.item(), weight.item()  # the decoder is not updated
            self.opt_g.zero_grad(set_to_none=True)
            loss.backward()
        finally:
            self.disc.requires_grad_(True)
        self.opt_g.step()
        if self.ema is not None:
            with torch.no_grad():
                for average, p in zip(self.ema, self.decoder, strict=True):
                    average.lerp_(p.detach(), 1.0 - EMA_DECAY)
        return rec.item(), gan.item(), d_loss.item(), weight.item()

    def judge(self, images: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The discriminator's float32 patch logits (B, 1, H/4, W/4), computed at the phase's precision."""
        with autocast(self.precision, self.device):
            return self.disc(images, y).float()

    def draw_prior_noise(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The noise of ``batch`` prior draws: a uniform per row (the mixture component) and (B, D) normals."""
        u = torch.rand(batch, generator=self.generator)                                      # (B,)
        return u, torch.randn((batch, self.model.cfg.latent_dim), generator=self.generator)   # (B, D)

    def prior_sample(self, y: torch.Tensor, noise: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        """z (B, D) from the prior the artifact ships, transformed as the runtime transforms it (at T = 1)."""
        assert noise is not None
        u, eps = (t.numpy() for t in noise)
        z = transform(self.prior, y.cpu().numpy(), eps, u, 1.0)                              # (B, D) float32
        return torch.from_numpy(z).to(self.device)


def mode_seeking(images: torch.Tensor, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """MSGAN's term (Mao et al., 2019) over the pairs of a batch that share a label: 1 / (mean image distance per
    unit of code distance), small when images (B, C, H, W) from different codes z (B, D) of a label differ; 0
    when no two rows of y (B,) share a label."""
    flat = images.float().flatten(1)                                                   # (B, P)
    d_img = torch.cdist(flat, flat, p=1) / flat.shape[1]                               # (B, B) mean |a - b|
    d_z = torch.cdist(z.float(), z.float(), p=1) / z.shape[1]                          # (B, B)
    same = (y[:, None] == y[None, :]) & ~torch.eye(y.shape[0], dtype=torch.bool, device=y.device)
    if not bool(same.any()):
        return images.new_zeros(())
    ratio = (d_img[same] / (d_z[same] + 1e-8)).mean()
    return 1.0 / (ratio + 1e-5)


def _copy(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in weights.items()}


def diversity(images: np.ndarray, labels: np.ndarray) -> float:
    """Mean pairwise pixel distance within each label of ``images`` (N, C, H, W), averaged over the labels."""
    rng = np.random.default_rng(0)
    return float(np.mean([mean_pairwise_distance(images[labels == k], rng) for k in np.unique(labels)]))


def _summary_line(record: dict[str, Any], total: int, reference: dict[str, float]) -> str:
    return (f"adversarial epoch {record['adversarial_epoch']}/{total}  recon {record['recon']:.2f}  "
            f"label fidelity {record['label_fidelity']:.3f} (before {reference['label_fidelity']:.3f})  "
            f"diversity {record['diversity']:.2f} (before {reference['diversity']:.2f})  {record['seconds']:.1f} s")
