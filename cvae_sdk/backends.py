"""The training-backend contract: what any trainer must deliver, and the registry that finds one.

A backend turns a :class:`TrainConfig` into a run folder (checkpoints plus a ``metrics.jsonl``
with a ``val_elbo`` per epoch) and exports a run into an ONNX artifact that
:class:`cvae_sdk.Generator` serves. Backends register under the entry-point group
``cvae_sdk.training_backends``; ``torch`` (the ``cvae_sdk_training`` package) is built in.

The runtime reaches a training backend only through this registry, never by importing it.
Besides ``train`` and ``export``, a backend may offer the optional capabilities in
:data:`CAPABILITIES` (data-parallel training, int8/fp16 variants, likelihoods, the bench's
reference engines, ...); :func:`capability` finds one or says which backend lacks it.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

ENTRY_POINT_GROUP = "cvae_sdk.training_backends"
BUILTIN_BACKENDS = {"torch": "cvae_sdk_training.backend:TorchBackend"}
# Optional backend methods, and what a user loses without them (see TorchBackend for their signatures).
CAPABILITIES = {
    "launch": "data-parallel training (--nproc)",
    "quantize": "int8 and float16 artifact variants (--int8, --fp16)",
    "export_for_evaluation": "evaluating a run folder or checkpoint (export the run, then evaluate the .onnx)",
    "likelihood_report": "test ELBO and -log p(x|y) of a run",
    "reconstruct": "scoring a run's reconstructions of real images in evaluate",
    "train_classifier": "training an evaluation classifier",
    "bench_engine": "the bench's PyTorch reference engines",
}
ARCHS = ("dense", "conv", "mlp")
UPSAMPLES = ("subpixel", "transpose")
AUGMENTS = ("auto", "shift", "flip", "none")  # training.augment: whole-pixel shifts or mirrors of half the images
# Each default below was chosen by measurement: benchmarks/quality.md says what was tried and what
# it scored, from the rows of benchmarks/results/.
# Training length when --epochs is not given: about this many examples seen, within the epoch bounds,
# cut short by early stopping once the validation ELBO stops improving (small data overfits).
SAMPLE_BUDGET, MIN_EPOCHS, MAX_EPOCHS = 1_000_000, 40, 200
# Early stopping when --patience is not given: PATIENCE epochs without a better validation ELBO, or
# a PATIENCE_SHARE of a shorter plan. The validation ELBO wanders by a tenth of a nat between epochs
# while it still improves by hundredths, and an overfitting run worsens for good: 20 epochs are a
# fifth or less of a plan of 100 or more, and a short plan (large images) stops as soon, relatively.
PATIENCE, PATIENCE_SHARE = 20, 0.25
# The adversarial phase when --adversarial-epochs is not given: about this many images seen, within
# [1, MAX_ADVERSARIAL_EPOCHS] epochs (benchmarks/quality.md, "The adversarial phase").
ADVERSARIAL_BUDGET, MAX_ADVERSARIAL_EPOCHS = 100_000, 10
# Planned ELBO epochs that early stopping leaves unrun go to the phase, within the same cap: a phase
# epoch costs about PHASE_EPOCH_COST ELBO epochs (the discriminator's steps and the health check).
PHASE_EPOCH_COST = 3.0
# Above BUDGET_VALUES the phase keeps its budget counted in images, and the planned ELBO epochs pay for
# the phase epochs this adds, PHASE_EPOCH_COST each, down to the ELBO floor (phase_trade): at 64x64
# colour the phase's length decided FD and the worst class where the last ELBO epochs did not
# (benchmarks/quality.md, "Larger images").
# Both budgets (and MIN_EPOCHS) count images of up to BUDGET_VALUES pixel values, 32x32 colour, the
# largest size measured inside 20 minutes on 2 cores. A step costs about its pixel values, so larger
# images see proportionally fewer (64x64 colour: a quarter; benchmarks/quality.md, "Larger images").
BUDGET_VALUES = 32 * 32 * 3
# --precision auto: bfloat16 mixed precision (torch.autocast) where the budgets above are cut, images of
# more than BUDGET_VALUES values, on a CPU that computes bfloat16 natively (AVX512-BF16 or AMX); float32
# elsewhere, where every recorded quality row was trained. A mixed-precision step costs about
# BF16_STEP_COST of a float32 one (results/precision_step.json), so its images count that much towards
# the budgets.
PRECISIONS = ("auto", "fp32", "bf16")
BF16_STEP_COST = 0.6
# --time-limit when not given: the minutes a run and its export may take. The budgets above count images,
# sized on a 2-core AVX-512 CPU, where a photos epoch (32x32 colour) took a median 3.96 s; on a CPU with AVX2
# alone it took 9.7 s and the run overran 20 minutes (benchmarks/quality.md). A plan sized from the data is shortened
# to fit (training/clock.py), leaving the export EXPORT_EPOCHS of the run's median ELBO epoch, at least
# EXPORT_RESERVE_S: exports of 10,000-image sets took 4.2-7.5 such epochs, on CPUs with and without AVX-512, from
# 32x32 to 64x64 colour (results/own_data*.jsonl), and the small sets' took 15-62 s.
TIME_LIMIT_MINUTES = 20.0
EXPORT_EPOCHS, EXPORT_RESERVE_S = 8.0, 90.0
# --likelihood auto, by image channels: grey sets (MNIST, glyphs) have near-binary pixels, for which
# Bernoulli is the standard; colour pixels are not, and Bernoulli's fixed curvature draws them as
# blurred means.
LIKELIHOODS = {1: "bernoulli", 3: "gaussian"}
# --latent-dim when not given, by image channels: colour images keep more in z for the decoder to draw
# (on the photo and scene sets 64 dimensions drew sharper, more faithful and more varied samples than 16,
# for 0.05 MFLOP more per sample); on grey sets 32 drew no better than 16 (benchmarks/quality.md).
LATENT_DIMS = {1: 16, 3: 64}
# --augment auto, by image channels: colour photographs keep their class mirrored, and mirroring half of them
# let both 32x32 colour sets train longer, to a higher validation ELBO and more varied samples
# (benchmarks/quality.md, "Colour images mirrored"); a mirrored character is another character or none,
# and shifting a grey set drew worse samples, so grey images are seen as they are.
AUGMENT_BY_CHANNELS = {1: "none", 3: "flip"}
# The prior when --aggregate-components is not given: the aggregate posterior itself, one diagonal Gaussian
# per training image (training/aggregate.py). Fitted mixtures of 10 to 128 Gaussians per label drew
# blurrier, less faithful samples, the fewer the worse (benchmarks/quality.md). CODE_BUDGET bounds the
# artifact's metadata (2 x D numbers per code): beyond it each label keeps a random share of its images.
CODE_BUDGET = 32768


def budget_scale(image_values: int, precision: str = "fp32") -> float:
    """The share of the training budgets an image of ``image_values`` values gets, trained at ``precision``
    ("fp32" or "bf16"): 1 up to BUDGET_VALUES (float32) or BUDGET_VALUES / BF16_STEP_COST (bfloat16)."""
    cost = image_values * (BF16_STEP_COST if precision == "bf16" else 1.0)
    return min(1.0, BUDGET_VALUES / max(1.0, cost))


def export_reserve(epoch_seconds: float) -> float:
    """Seconds of a time limit kept for the export of a run whose ELBO epochs take ``epoch_seconds``: EXPORT_EPOCHS
    of them, at least EXPORT_RESERVE_S."""
    return max(EXPORT_RESERVE_S, EXPORT_EPOCHS * epoch_seconds)


def _elbo_floor(scale: float) -> int:
    """The fewest ELBO epochs a plan at ``scale`` gets: MIN_EPOCHS, scaled."""
    return math.ceil(MIN_EPOCHS * scale)


def _elbo_epochs(train_images: int, scale: float) -> int:
    """About SAMPLE_BUDGET examples seen, within [MIN_EPOCHS, MAX_EPOCHS], all three at ``scale``."""
    return max(_elbo_floor(scale), min(MAX_EPOCHS, round(SAMPLE_BUDGET * scale / max(1, train_images))))


def _phase_epochs(train_images: int, scale: float, extra: float = 0.0) -> int:
    """About ADVERSARIAL_BUDGET images seen at ``scale``, plus ``extra`` epochs, within [1, MAX_ADVERSARIAL_EPOCHS]."""
    return max(1, min(MAX_ADVERSARIAL_EPOCHS, round(ADVERSARIAL_BUDGET * scale / max(1, train_images) + extra)))


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; a backend stops and keeps its last good checkpoint."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs besides the model architecture; saved with the weights."""

    data: str
    out: str
    arch: str = "conv"
    latent_dim: int | None = None  # None: by the images' channels (LATENT_DIMS)
    hidden: int = 512
    conv_channels: int = 32
    upsample: str = "subpixel"  # the conv decoder's upsampling: "subpixel" or "transpose"
    doublings: int = 2  # how often the conv decoder doubles its resolution (benchmarks/quality.md, "Larger images")
    prior: str = "learned"
    likelihood: str = "auto"  # "auto": Bernoulli for grey images, the optimal-sigma Gaussian for colour (LIKELIHOODS)
    epochs: int | None = None  # None: sized from the data (SAMPLE_BUDGET), with early stopping
    batch_size: int = 128
    lr: float = 1e-3
    lr_schedule: str = "cosine"
    patience: int | None = None  # epochs without a better validation ELBO before training stops (0: never;
    # None: planned_patience)
    # KL weight: 0.25 drew better FD and diversity than 0.5 at equal fidelity
    beta: float = 0.25
    warmup_epochs: float = 0.0
    val_fraction: float = 0.1
    seed: int = 0
    device: str = "cpu"
    mirror: str | None = None
    aggregate_components: int | None = None  # None: one Gaussian per training image (CODE_BUDGET); M: M fitted
    binarize: bool = False
    augment: str = "auto"  # "auto": by the images' channels (AUGMENT_BY_CHANNELS; training/augment.py)
    classifier: str | None = None  # evaluation classifier for the per-epoch label-fidelity guard-rail
    # the adversarial phase after ELBO training (training/adversarial.py): None plans it from the data
    # (planned_adversarial_epochs), 0 turns it off; the weight scales its GAN term
    adversarial_epochs: int | None = None
    adversarial_weight: float = 1.0
    tensorboard: bool = False  # also log every epoch to RUN/tensorboard (training/board.py)
    precision: str = "auto"  # the training steps' arithmetic (PRECISIONS; planned_precision)
    # minutes the run and its export may take (0: no limit): planned lengths are shortened to fit (training/clock.py)
    time_limit: float = TIME_LIMIT_MINUTES

    def __post_init__(self) -> None:
        checks = [
            (self.epochs is None or self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.patience is None or self.patience >= 0,
             f"patience must be >= 0 (0 never stops early), got {self.patience}"),
            (self.lr_schedule in ("cosine", "constant"),
             f"lr_schedule must be 'cosine' or 'constant', got {self.lr_schedule!r}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.latent_dim is None or self.latent_dim >= 1, f"latent_dim must be >= 1, got {self.latent_dim}"),
            (self.doublings >= 2, f"doublings must be >= 2, got {self.doublings}"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (self.beta >= 0, f"beta must be >= 0, got {self.beta}"),
            (self.warmup_epochs >= 0, f"warmup_epochs must be >= 0, got {self.warmup_epochs}"),
            (0 < self.val_fraction < 1, f"val_fraction must lie in (0, 1), got {self.val_fraction}"),
            (self.device in ("cpu", "cuda", "auto"), f"device must be cpu, cuda or auto, got {self.device!r}"),
            (self.arch in ARCHS, f"arch must be one of {ARCHS}, got {self.arch!r}"),
            (self.upsample in UPSAMPLES, f"upsample must be one of {UPSAMPLES}, got {self.upsample!r}"),
            (self.augment in AUGMENTS, f"augment must be one of {AUGMENTS}, got {self.augment!r}"),
            (self.likelihood in ("auto", "bernoulli", "gaussian"),
             f"likelihood must be auto, bernoulli or gaussian, got {self.likelihood!r}"),
            (self.adversarial_epochs is None or self.adversarial_epochs >= 0,
             f"adversarial_epochs must be >= 0 (0 turns the phase off), got {self.adversarial_epochs}"),
            (math.isfinite(self.adversarial_weight) and self.adversarial_weight > 0,
             f"adversarial_weight must be a finite number > 0, got {self.adversarial_weight}"),
            (self.aggregate_components is None or self.aggregate_components >= 0,
             f"aggregate_components must be >= 0 (0 turns the fit off), got {self.aggregate_components}"),
            (self.precision in PRECISIONS, f"precision must be one of {PRECISIONS}, got {self.precision!r}"),
            (math.isfinite(self.time_limit) and self.time_limit >= 0,
             f"time_limit must be a number of minutes >= 0 (0: no limit), got {self.time_limit}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def planned_likelihood(self, channels: int) -> str:
        """--likelihood, or with "auto" the one for the images' channels (LIKELIHOODS)."""
        return self.likelihood if self.likelihood != "auto" else LIKELIHOODS.get(channels, "gaussian")

    def planned_latent_dim(self, channels: int) -> int:
        """--latent-dim, or the size for the images' channels (LATENT_DIMS)."""
        return self.latent_dim if self.latent_dim is not None else LATENT_DIMS.get(channels, LATENT_DIMS[3])

    def planned_augment(self, channels: int) -> str:
        """--augment, or with "auto" the augmentation for the images' channels (AUGMENT_BY_CHANNELS)."""
        return self.augment if self.augment != "auto" else AUGMENT_BY_CHANNELS.get(channels, "flip")

    def planned_precision(self, image_values: int, native_bf16: bool) -> str:
        """--precision, or with "auto" "bf16" for images of more than BUDGET_VALUES values on a device that
        computes bfloat16 natively (``native_bf16``), else "fp32"."""
        if self.precision != "auto":
            return self.precision
        return "bf16" if native_bf16 and image_values > BUDGET_VALUES else "fp32"

    def planned_epochs(self, train_images: int, image_values: int, precision: str = "fp32") -> int:
        """--epochs, or about SAMPLE_BUDGET examples seen, within [MIN_EPOCHS, MAX_EPOCHS], both scaled
        down for images of more than BUDGET_VALUES values (``image_values``: channels x height x width),
        counted at the step cost of ``precision`` (budget_scale), less what the phase's epochs take
        (phase_trade)."""
        if self.epochs is not None:
            return self.epochs
        scale = budget_scale(image_values, precision)
        traded = self.phase_trade(train_images, image_values, precision)
        return _elbo_epochs(train_images, scale) - round(traded * PHASE_EPOCH_COST)

    def planned_patience(self, planned_epochs: int) -> int:
        """--patience, or PATIENCE epochs, or PATIENCE_SHARE of a shorter plan of ``planned_epochs``."""
        if self.patience is not None:
            return self.patience
        return min(PATIENCE, math.ceil(PATIENCE_SHARE * planned_epochs))

    def planned_adversarial_epochs(self, train_images: int, image_values: int, precision: str = "fp32",
                                   unrun_epochs: int = 0) -> int:
        """--adversarial-epochs, or about ADVERSARIAL_BUDGET images seen (scaled as in planned_epochs)
        plus the epochs the ELBO plan pays for (phase_trade) and ``unrun_epochs`` planned ELBO epochs that
        early stopping left (PHASE_EPOCH_COST each; counted only when the ELBO epochs were planned too),
        within [1, MAX_ADVERSARIAL_EPOCHS]."""
        if self.adversarial_epochs is not None:
            return self.adversarial_epochs
        scale = budget_scale(image_values, precision)
        traded = self.phase_trade(train_images, image_values, precision)
        unrun = unrun_epochs / PHASE_EPOCH_COST if self.epochs is None else 0.0
        return min(MAX_ADVERSARIAL_EPOCHS, _phase_epochs(train_images, scale, unrun) + traded)

    def phase_trade(self, train_images: int, image_values: int, precision: str = "fp32") -> int:
        """Phase epochs that planned ELBO epochs pay for when neither length is given: those the phase
        loses by its budget's scaling for large images (budget_scale), as many as the ELBO plan affords
        above its floor, MIN_EPOCHS scaled, at PHASE_EPOCH_COST ELBO epochs each. 0 up to BUDGET_VALUES."""
        if self.epochs is not None or self.adversarial_epochs is not None:
            return 0
        scale = budget_scale(image_values, precision)
        lost = _phase_epochs(train_images, 1.0) - _phase_epochs(train_images, scale)
        affordable = (_elbo_epochs(train_images, scale) - _elbo_floor(scale)) // PHASE_EPOCH_COST
        return max(0, min(lost, int(affordable)))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Runs saved before ``upsample`` existed had transposed convolutions, before ``augment`` none,
        before the adversarial phase none, before the latent was sized by channels 16 dimensions, before
        ``precision`` float32 steps, and before ``time_limit`` no limit."""
        return cls(**{"upsample": "transpose", "augment": "none", "adversarial_epochs": 0, "latent_dim": 16,
                      "precision": "fp32", "time_limit": 0.0, **data})


@dataclass(frozen=True)
class TrainResult:
    """What a finished run left behind."""

    run_dir: Path
    best_checkpoint: Path
    last_checkpoint: Path
    epochs_completed: int
    best_val_elbo: float
    history: list[dict[str, Any]] = field(default_factory=list)
    primary: bool = True  # False on the ranks > 0 of a distributed run, which write nothing

    def summary(self) -> dict[str, Any]:
        """The one JSON line ``cvae-sdk train`` prints."""
        return {"run_dir": str(self.run_dir), "best_checkpoint": str(self.best_checkpoint),
                "epochs": self.epochs_completed, "best_val_elbo": self.best_val_elbo}


@runtime_checkable
class TrainingBackend(Protocol):
    """The contract: train a run, and export a run (or one checkpoint) to an ONNX artifact."""

    name: str

    def train(self, config: TrainConfig, *, resume: bool = False, progress: bool = True) -> TrainResult:
        ...

    def export(self, source: Path, out: Path, **options: Any) -> Path:
        ...


def available_backends() -> dict[str, str]:
    """Backend names mapped to their ``module:attr`` targets: built-ins, then entry points."""
    found = dict(BUILTIN_BACKENDS)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found[ep.name] = ep.value
    return found


def capability(name: str, feature: str) -> Callable[..., Any]:
    """The backend ``name``'s method for one of the optional :data:`CAPABILITIES`, or a one-line error."""
    backend = get_backend(name)
    method = getattr(backend, feature, None)
    if not callable(method):
        raise ValueError(f"training backend {name!r} does not offer {CAPABILITIES[feature]}; "
                         "use --backend torch (pip install 'cvae-sdk[train]')")
    return method  # type: ignore[no-any-return]


def get_backend(name: str) -> TrainingBackend:
    """Instantiate the backend registered as ``name``."""
    targets = available_backends()
    if name not in targets:
        raise ValueError(f"unknown training backend {name!r}; available: {sorted(targets)}")
    module_name, _, attr = targets[name].partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except ImportError as err:
        raise ValueError(f"backend {name!r} could not be imported ({err}); the torch backend needs "
                         "the training extra: pip install 'cvae-sdk[train]'") from err
    backend = factory()
    if not isinstance(backend, TrainingBackend):
        raise TypeError(f"backend {name!r} ({targets[name]}) does not implement TrainingBackend")
    return backend
