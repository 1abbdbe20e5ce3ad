"""The training loop: seeded splits, KL warm-up, validation ELBO, atomic checkpoints, exact resume, a time limit.

Randomness comes from one ``torch.Generator`` seeded from the config (batch order and the
reparameterisation noise); its state is saved in every checkpoint, so ``--resume`` continues the
same stream, including from a checkpoint taken mid-epoch by Ctrl-C. Under torchrun the same loop
runs data-parallel on DDP (see :mod:`cvae_sdk_training.distributed`): ``batch_size`` is the global batch.
A plan sized from the data is shortened to end inside ``--time-limit`` (see :mod:`cvae_sdk_training.clock`).
"""

from __future__ import annotations

import gc
import math
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from cvae_sdk.backends import CODE_BUDGET, PHASE_EPOCH_COST, TrainConfig, TrainingDiverged, TrainResult, export_reserve
from cvae_sdk.data import Dataset, LabeledImages
from cvae_sdk.images import make_image_grid, write_png
from cvae_sdk.progress import progress_bar
from cvae_sdk.quality import EvalClassifier

from .adversarial import AdversarialPhase, diversity
from .aggregate import aggregate_posterior, fit_aggregate_prior
from .augment import augment_batch
from .board import Board
from .checkpoint import BEST, LAST, EpochPosition, load_checkpoint, save_checkpoint
from .clock import Plan, RunClock, fit_plan
from .distributed import DistContext, all_sum, rank_device, rank_slice, setup, teardown, wait_for_all
from .history import alarm_from, alarms, append_metric, read_metrics, summary_line, write_metrics
from .model import CVAE, ModelConfig
from .precision import adam, autocast, native_bf16
from .preflight import guard_classifier, preflight
from .splits import split_validation

EVAL_BATCH = 1024
LABEL_CHECK_PER_CLASS = 100
SAMPLE_GRID = "samples.png"      # the run folder's picture of what the model draws now, redrawn every epoch
SAMPLE_GRID_COLUMNS, SAMPLE_GRID_ROWS = 8, 20  # samples per class, and at most this many classes shown
ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. (2016): Cov_x(E_q[z_d]) above this counts as active


def build_model(config: TrainConfig, image_shape: tuple[int, int, int], num_classes: int) -> CVAE:
    model_cfg = ModelConfig(image_shape=image_shape, num_classes=num_classes,
                            latent_dim=config.planned_latent_dim(image_shape[0]),
                            arch=config.arch,  # type: ignore[arg-type]
                            hidden=config.hidden, conv_channels=config.conv_channels,
                            upsample=config.upsample,  # type: ignore[arg-type]
                            doublings=config.doublings,
                            prior=config.prior,  # type: ignore[arg-type]
                            likelihood=config.planned_likelihood(image_shape[0]))  # type: ignore[arg-type]
    with torch.random.fork_rng(devices=[]):  # seeded init without touching the global RNG
        torch.manual_seed(config.seed)
        return CVAE(model_cfg)


def train(config: TrainConfig, *, resume: bool = False, progress: bool = True) -> TrainResult:
    """Train a CVAE as ``config`` says and return where the run's files are."""
    started = time.monotonic()  # the run's clock counts from here (training/clock.py)
    config, state, dataset, device = preflight(config, resume)
    # Every rank has passed the same checks on the same inputs before the first collective call.
    context = setup(device)
    try:
        result = _train_rank(config, state, dataset, rank_device(device, context), context, progress, started)
        wait_for_all(context)
        return result
    finally:
        # The DDP wrapper holds the process group, and C++ threads with it: it is freed here, with the
        # loop that held it, and not at interpreter exit, where one CI run saw a rank abort
        # ("terminate called without an active exception") after the group was destroyed under it.
        gc.collect()
        teardown(context)


def _train_rank(config: TrainConfig, state: dict[str, Any] | None, dataset: Dataset, device: torch.device,
                context: DistContext, progress: bool, started: float) -> TrainResult:
    """This rank's part of :func:`train`; nothing it builds outlives it."""
    run_dir = Path(config.out)
    if context.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        for stale in run_dir.glob(".*.tmp"):  # temp files of writes that a kill cut short
            stale.unlink()
    train_split, val_split = split_validation(dataset.train, config.val_fraction, config.seed)
    classifier = guard_classifier(config, dataset, train_split, val_split, run_dir) if context.is_main else None
    loop = _Loop(config, _Data.load(train_split, val_split, config, device), run_dir, context,
                 list(dataset.class_names), classifier, state, started)
    return loop.run(progress and context.is_main)


@dataclass(frozen=True)
class _Data:
    """The run's tensors on its device: train images (N, C, H, W) and labels (N,), and validation's."""

    x: torch.Tensor
    y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor

    @classmethod
    def load(cls, train_split: LabeledImages, val_split: LabeledImages, config: TrainConfig,
             device: torch.device) -> _Data:
        val_x = torch.from_numpy(val_split.images)
        if config.binarize:  # one fixed binarisation of the validation images
            val_x = torch.bernoulli(val_x, generator=torch.Generator().manual_seed(config.seed + 3))
        return cls(torch.from_numpy(train_split.images).to(device), torch.from_numpy(train_split.labels).to(device),
                   val_x.to(device), torch.from_numpy(val_split.labels).to(device))


class _StepStats(NamedTuple):
    """One optimiser step, summed over ranks: loss, recon and KL times examples, and two alarm counts."""

    loss: float
    recon: float
    kl: float
    nonfinite_ranks: int     # ranks whose loss was NaN or infinite
    interrupted_ranks: int   # ranks that saw Ctrl-C


class _Loop:
    """Epochs of training, validation and checkpoints for one run, built (and restored) in one step."""

    def __init__(self, config: TrainConfig, data: _Data, run_dir: Path, context: DistContext,
                 class_names: list[str], classifier: EvalClassifier | None, state: dict[str, Any] | None,
                 started: float) -> None:
        self.config, self.data, self.run_dir, self.context = config, data, run_dir, context
        self.device = data.x.device
        self.class_names, self.classifier = class_names, classifier
        self.model = build_model(config, tuple(data.x.shape[1:]), len(class_names)).to(self.device)  # type: ignore[arg-type]
        self.optimizer = adam([p for p in self.model.parameters() if p.requires_grad], config.lr)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.net: torch.nn.Module = self.model  # what the training step calls: the model, or its DDP wrapper
        self.image_values = math.prod(data.x.shape[1:])  # C * H * W: what the budgets scale by
        self.precision = config.planned_precision(self.image_values, native_bf16(self.device))  # "fp32" or "bf16"
        self.augment = config.planned_augment(data.x.shape[1])  # "shift", "flip" or "none"
        self.plan = config.planned_epochs(data.x.shape[0], self.image_values, self.precision)  # before any cut
        self.total_epochs = self.plan  # what the clock leaves of it (fit_to_time)
        self.patience = config.planned_patience(self.plan)
        self.clock = RunClock(config, started)
        self.phase_cap: int | None = None  # the phase epochs the clock left in the plan (None: not cut)
        self.walls: list[float] = []  # this process's ELBO epochs, in seconds of wall time
        self.interrupted = False  # set by SIGINT; honoured between optimiser steps
        self.epoch, self.best = 0, -math.inf
        self.history: list[dict[str, Any]] = []
        self.position: EpochPosition | None = None  # mid-epoch, after a Ctrl-C checkpoint
        self.board: Board | None = None  # TensorBoard, on rank 0 with --tensorboard
        if state is not None:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.generator.set_state(state["rng"])
            self.epoch, self.best = int(state["epoch"]), float(state["best_val_elbo"])
            self.clock.restore(float(state.get("run_seconds", 0.0)))
            if config.epochs is None:  # a plan the clock shortened stays shortened
                self.total_epochs = int(state.get("planned_epochs", self.total_epochs))
            self.phase_cap = state.get("phase_cap")
            self.position = EpochPosition.from_state(state["partial"]) if state.get("partial") else None
            self.history = [r for r in read_metrics(run_dir) if r["epoch"] <= self.epoch]
            if context.is_main:
                write_metrics(run_dir, self.history)  # drop lines a kill left past the checkpoint

    def state(self, position: EpochPosition | None = None) -> dict[str, Any]:
        """The checkpoint: weights, optimiser, RNG, progress, configs, and the mid-epoch position if any."""
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "rng": self.generator.get_state(), "epoch": self.epoch, "best_val_elbo": self.best,
                "model_config": self.model.cfg.to_dict(), "train_config": self.config.to_dict(),
                "class_names": self.class_names, "metrics": self.history[-1] if self.history else {},
                "partial": position.to_state() if position is not None else None,
                "planned_epochs": self.total_epochs, "uncut_epochs": self.plan, "phase_cap": self.phase_cap,
                "run_seconds": self.clock.spent()}

    # --- loop -------------------------------------------------------------------------------------
    def run(self, progress: bool) -> TrainResult:
        if self.context.distributed:  # built after restore(), so every rank starts from the same weights
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, self._on_sigint) if main else None
        if self.config.tensorboard and self.context.is_main:
            self.board = Board(self.run_dir, self.epoch)
        try:
            while self.epoch < self.total_epochs and not self.stop_early():
                self.run_epoch(progress)
                self.share_plan()
            if self.context.is_main:
                self.sharpen(self.finish(), progress)
        finally:
            if main:
                signal.signal(signal.SIGINT, previous)
            self.net = self.model  # drop the DDP wrapper (and its hold on the process group) now
            if self.board is not None:
                self.board.close()
        return TrainResult(self.run_dir, self.run_dir / BEST, self.run_dir / LAST, self.epoch,
                           self.best, self.history, primary=self.context.is_main)

    def _on_sigint(self, signum: int, frame: object) -> None:
        self.interrupted = True

    def stale_epochs(self) -> int:
        """Epochs since the best validation ELBO (derived from the history, so resume keeps it)."""
        if not self.history:
            return 0
        best = max(range(len(self.history)), key=lambda i: self.history[i]["val_elbo"])
        return len(self.history) - 1 - best

    def stop_early(self) -> bool:
        """Rank 0 decides (it alone validates); every rank learns it through one all-reduce."""
        stale = self.context.is_main and self.patience > 0 and self.stale_epochs() >= self.patience
        return bool(all_sum(torch.tensor([float(stale)], dtype=torch.float64), self.context)[0] > 0)

    def lr_at(self, epoch_fraction: float) -> float:
        """Cosine decay from lr to lr / 20 over the planned epochs (or constant)."""
        if self.config.lr_schedule == "constant":
            return self.config.lr
        t = min(1.0, (self.epoch + epoch_fraction) / self.total_epochs)
        return self.config.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))

    def run_epoch(self, progress: bool) -> None:
        started = time.monotonic()
        try:
            record = self.train_epoch(progress)
        except KeyboardInterrupt:
            if self.context.is_main:
                save_checkpoint(self.state(self.position), self.run_dir / LAST)
            raise
        self.epoch += 1
        if not self.context.is_main:  # rank 0 validates and writes; the others go on to the next epoch
            return
        record["world_size"] = self.context.world_size
        record.update(self.validate())
        record["epoch"] = self.epoch
        record.update(self.label_check())
        grid = self.draw_samples()
        raised = {kind for r in self.history for kind in r.get("alarms", {})}
        raising = self.epoch >= alarm_from(self.total_epochs)
        record["alarms"] = alarms(record, self.model.cfg.latent_dim) if raising else {}
        self.walls.append(time.monotonic() - started)
        self.fit_to_time(progress)
        record["planned_epochs"] = self.total_epochs
        self.history.append(record)
        append_metric(self.run_dir, record)
        if self.board is not None:
            self.board.epoch(record, grid)
        for kind, message in record["alarms"].items():
            if kind not in raised:  # once per kind and run (resume included): metrics.jsonl keeps every epoch's
                print(f"warning: {message}", file=sys.stderr, flush=True)
        improved = record["val_elbo"] > self.best
        if improved:
            self.best = record["val_elbo"]
            save_checkpoint(self.state(), self.run_dir / BEST)
        save_checkpoint(self.state(), self.run_dir / LAST)
        if progress:  # the epochs left and the phase's, PHASE_EPOCH_COST epochs each, at this run's epoch time
            epochs_left = self.total_epochs - self.epoch + PHASE_EPOCH_COST * self.planned_phase()
            left = epochs_left * self.epoch_seconds()
            print(summary_line(record, self.total_epochs, self.model.cfg.latent_dim, improved, left),
                  file=sys.stderr, flush=True)

    def planned_phase(self) -> int:
        """The adversarial phase's epochs as planned now, less any the clock took (self.phase_cap)."""
        phase = self.config.planned_adversarial_epochs(self.data.x.shape[0], self.image_values, self.precision)
        return phase if self.phase_cap is None else min(phase, self.phase_cap)

    def epoch_seconds(self) -> float:
        """An ELBO epoch's length here: the median of this process's epochs, the first (which builds the kernels)
        left out once there are others. Needs one epoch run."""
        return float(np.median(self.walls[1:] if len(self.walls) > 1 else self.walls))

    def fit_to_time(self, progress: bool) -> None:
        """Shorten the planned epochs left, ELBO and phase alike, to what ends by the clock's deadline
        (training/clock.py) at this process's epoch length (epoch_seconds), from its second epoch; lengths given
        stay."""
        if len(self.walls) < 2 or math.isinf(self.clock.limit):
            return
        config, elbo, phase = self.config, self.total_epochs - self.epoch, self.planned_phase()
        mine = Plan(elbo if config.epochs is None else 0, phase if config.adversarial_epochs is None else 0)
        fixed = Plan(elbo - mine.elbo, phase - mine.phase)
        epoch_seconds = self.epoch_seconds()
        self.clock.reserve = export_reserve(epoch_seconds)
        fitted = fit_plan(mine, fixed, epoch_seconds, PHASE_EPOCH_COST, self.clock.time_left())
        if fitted == mine:
            return
        if progress and self.total_epochs == self.plan and self.phase_cap is None:  # said at the first cut only
            cuts = [f"{what} from {before} to {after} epochs" for what, before, after in (
                ("ELBO training", self.total_epochs, self.epoch + fitted.elbo),
                ("the adversarial phase", mine.phase, fitted.phase)) if after < before]
            print(f"note: an epoch takes {epoch_seconds:.1f} s here, so {' and '.join(cuts)} are cut to end within "
                  f"--time-limit {config.time_limit:g} minutes with the export; --time-limit 0 runs the whole plan",
                  file=sys.stderr, flush=True)
        self.total_epochs -= mine.elbo - fitted.elbo
        if config.adversarial_epochs is None:
            self.phase_cap = fitted.phase

    def share_plan(self) -> None:
        """Every rank takes rank 0's planned epochs, which fit_to_time may have shortened."""
        mine = float(self.total_epochs) if self.context.is_main else 0.0
        self.total_epochs = int(all_sum(torch.tensor([mine], dtype=torch.float64), self.context)[0])

    def train_epoch(self, progress: bool) -> dict[str, Any]:
        n, bs = self.data.x.shape[0], self.config.batch_size
        if self.position is None:
            sums = [0.0, 0.0, 0.0]                                               # loss, recon, KL times examples
            self.position = EpochPosition(torch.randperm(n, generator=self.generator), sums)
        at = self.position
        steps = math.ceil(n / bs)
        self.model.train()
        started = time.perf_counter() - at.seconds
        with progress_bar(steps, f"epoch {self.epoch + 1}/{self.total_epochs}", progress) as bar:
            bar.advance(at.step)
            while at.step < steps:
                step = at.step
                stats = self.train_step(at.perm[step * bs:(step + 1) * bs], step / steps)
                if stats.nonfinite_ranks > 0:
                    raise TrainingDiverged(
                        f"loss became non-finite at epoch {self.epoch + 1}, step {step}; the last "
                        f"good checkpoint in {self.run_dir} is kept. Lower --lr or --beta and --resume")
                for group in self.optimizer.param_groups:
                    group["lr"] = self.lr_at(step / steps)
                self.optimizer.step()
                at.sums = [total + new for total, new in zip(at.sums, stats[:3], strict=True)]
                at.step, at.seconds = step + 1, time.perf_counter() - started
                if stats.interrupted_ranks > 0:
                    raise KeyboardInterrupt
                seen = min(n, (step + 1) * bs)
                bar.advance(1, f"loss {at.sums[0] / seen:.2f} recon {at.sums[1] / seen:.2f} "
                               f"kl {at.sums[2] / seen:.2f} {seen / at.seconds:.0f} samples/s")
        seconds = time.perf_counter() - started
        self.position = None
        loss, recon, kl = (total / n for total in at.sums)
        return {"train_loss": loss, "train_recon": recon, "train_kl": kl, "beta": self.beta_at(1.0),
                "lr": self.lr_at(1.0), "seconds": seconds, "samples_per_s": n / seconds, "precision": self.precision,
                "augment": self.augment}

    def train_step(self, idx: torch.Tensor, epoch_fraction: float) -> _StepStats:
        """Forward and backward on this rank's part of the global batch ``idx`` (B,); gradients are left
        for the optimiser step, which every rank skips together when any rank's loss is not finite."""
        eps = torch.randn((idx.shape[0], self.model.cfg.latent_dim), generator=self.generator)  # (B, D)
        part = rank_slice(idx.shape[0], self.context)
        data = self.data
        if self.config.binarize:  # dynamic binarisation: a fresh draw per visit, over the global batch
            x = torch.bernoulli(data.x[idx.to(self.device)].cpu(), generator=self.generator)[part]
        else:
            x = data.x[idx[part].to(self.device)]
        x = augment_batch(x, self.augment, self.generator, idx.shape[0], part)  # drawn for the global batch
        n_part = x.shape[0]
        if n_part == 0:  # a last batch smaller than the world: take part with a zero-weighted example
            part, x = slice(0, 1), data.x[idx[:1].to(self.device)]
        with autocast(self.precision, self.device):
            terms = self.net(x.to(self.device), data.y[idx[part].to(self.device)], eps[part].to(self.device),
                             self.beta_at(epoch_fraction))
        losses = torch.stack([terms.loss, terms.recon, terms.kl]).detach().cpu().double() * n_part
        flags = [float(not torch.isfinite(terms.loss)), float(self.interrupted)]
        summed = all_sum(torch.cat([losses, torch.tensor(flags, dtype=torch.float64)]), self.context).tolist()
        stats = _StepStats(summed[0], summed[1], summed[2], int(summed[3]), int(summed[4]))
        if stats.nonfinite_ranks == 0:
            self.optimizer.zero_grad(set_to_none=True)
            # DDP averages gradients over ranks; weighting by the part's share makes that the batch mean.
            weight = n_part * self.context.world_size / idx.shape[0] if self.context.distributed else 1.0
            (terms.loss * weight).backward()
        return stats

    def beta_at(self, epoch_fraction: float) -> float:
        if self.config.warmup_epochs <= 0:
            return self.config.beta
        return self.config.beta * min(1.0, (self.epoch + epoch_fraction) / self.config.warmup_epochs)

    @torch.no_grad()
    def validate(self) -> dict[str, Any]:
        """Validation ELBO in nats (beta = 1), KL per latent dimension and active units."""
        self.model.eval()
        noise = torch.Generator().manual_seed(self.config.seed + 1)  # same noise every epoch
        totals = torch.zeros(2, dtype=torch.float64)
        kl_dims = torch.zeros(self.model.cfg.latent_dim, dtype=torch.float64)
        means = []
        for start in range(0, self.data.val_x.shape[0], EVAL_BATCH):
            x, y = self.data.val_x[start:start + EVAL_BATCH], self.data.val_y[start:start + EVAL_BATCH]
            eps = torch.randn((x.shape[0], self.model.cfg.latent_dim), generator=noise).to(self.device)
            terms = self.model(x, y, eps)
            totals += torch.tensor([terms.recon.item(), terms.kl.item()], dtype=torch.float64) * x.shape[0]
            kl_dims += terms.kl_per_dim.double().cpu() * x.shape[0]
            means.append(self.model.encode(x, y)[0].cpu())
        n = self.data.val_x.shape[0]
        recon, kl = (totals / n).tolist()
        activity = torch.cat(means).double().var(dim=0)  # (D,)
        return {"val_elbo": -(recon + kl), "val_recon": recon, "val_kl": kl,
                "kl_per_dim": (kl_dims / n).tolist(),
                "active_units": int((activity > ACTIVE_UNIT_THRESHOLD).sum())}

    @torch.no_grad()
    def prior_samples(self, model: CVAE, y: torch.Tensor, seed: int) -> np.ndarray:
        """Images (N, C, H, W) that ``model`` decodes from its training prior for labels y (N,), with noise
        drawn on the CPU from ``seed`` (the same on any device and every call)."""
        mean, logvar = model.prior(y.to(self.device))                          # (N, D) on the device
        eps = torch.randn(mean.shape, generator=torch.Generator().manual_seed(seed)).to(self.device)
        return model.decode(mean + (0.5 * logvar).exp() * eps, y.to(self.device)).cpu().numpy()

    def check_samples(self) -> tuple[np.ndarray, np.ndarray]:
        """LABEL_CHECK_PER_CLASS prior samples of each label (K * n, C, H, W) and their labels; same noise each call."""
        y = torch.arange(self.model.cfg.num_classes).repeat_interleave(LABEL_CHECK_PER_CLASS)
        return self.prior_samples(self.model, y, self.config.seed + 4), y.numpy()

    def label_check(self) -> dict[str, Any]:
        """Share of prior samples the classifier assigns to the requested label (None without one)."""
        if self.classifier is None:
            return {"label_fidelity": None}
        return self._fidelity(*self.check_samples())

    def sample_health(self, images: np.ndarray, y: np.ndarray) -> dict[str, float]:
        """What the adversarial phase watches: the label fidelity and diversity of samples (N, C, H, W) of labels y."""
        fidelity = self._fidelity(images, y)
        return {"label_fidelity": fidelity["label_fidelity"], "worst_class_fidelity": fidelity["worst_class_fidelity"],
                "diversity": diversity(images, y)}

    def _fidelity(self, images: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
        assert self.classifier is not None
        cfg = self.model.cfg
        predicted, _ = self.classifier.predict(images)
        confusion = np.zeros((cfg.num_classes, cfg.num_classes), dtype=np.int64)  # (requested, seen)
        np.add.at(confusion, (labels, predicted), 1)
        per_class = np.diag(confusion) / np.maximum(confusion.sum(1), 1)
        real = self.classifier.class_accuracy(cfg.num_classes)  # what the classifier manages on real images
        worst = int((per_class / np.maximum(real, 1e-6)).argmin())
        seen = confusion[worst].copy()
        seen[worst] = -1
        return {"label_fidelity": float(per_class.mean()), "worst_class": self.class_names[worst],
                "worst_class_fidelity": float(per_class[worst]), "worst_class_real_accuracy": float(real[worst]),
                "worst_class_drawn_as": self.class_names[int(seen.argmax())]}

    def draw_samples(self) -> np.ndarray:
        """Redraw ``samples.png``: the same prior noise every epoch, one row per class (the first 20); returns
        the grid (H, W, C) uint8."""
        cfg = self.model.cfg
        y = torch.arange(min(cfg.num_classes, SAMPLE_GRID_ROWS)).repeat_interleave(SAMPLE_GRID_COLUMNS)  # (R * 8,)
        images = self.prior_samples(self.model, y, self.config.seed + 5)
        rows = [self.class_names[int(i)] for i in y[::SAMPLE_GRID_COLUMNS]]
        grid = make_image_grid(images, SAMPLE_GRID_COLUMNS, row_labels=rows, scale=2)
        write_png(self.run_dir / SAMPLE_GRID, grid)
        return grid

    def finish(self) -> dict[str, Any]:
        """Fit the aggregate-posterior prior into the best checkpoint, then plot the curves; returns the checkpoint."""
        components = self.config.aggregate_components
        best = load_checkpoint(self.run_dir / BEST)
        if components != 0 and "aggregate_prior" not in best:  # a resumed run may have fitted it already
            model = build_model(self.config, self.model.cfg.image_shape, self.model.cfg.num_classes)
            model.load_state_dict(best["model"])
            model.to(self.device)
            x, y, seed = self.data.x, self.data.y, self.config.seed
            fit = (aggregate_posterior(model, x, y, CODE_BUDGET, seed) if components is None
                   else fit_aggregate_prior(model, x, y, components, seed))
            best = {**best, "aggregate_prior": fit}
            save_checkpoint(best, self.run_dir / BEST)
        from .plots import plot_loss_curves

        plot_loss_curves(self.history, self.run_dir / "loss_curve.png")
        return best

    def sharpen(self, best: dict[str, Any], progress: bool) -> None:
        """The adversarial phase on the best checkpoint's decoder (training/adversarial.py), unless done or off;
        it also gets the time of the planned epochs that early stopping left unrun, and a planned phase ends by
        the run's deadline (training/clock.py)."""
        epochs = self.config.planned_adversarial_epochs(self.data.x.shape[0], self.image_values, self.precision,
                                                        unrun_epochs=self.total_epochs - self.epoch)
        if epochs == 0 or "adversarial" in best:
            return
        timed = self.config.adversarial_epochs is None
        first = PHASE_EPOCH_COST * self.epoch_seconds() if self.walls and timed else 0.0
        phase = AdversarialPhase(self.model, best, self.data.x, self.data.y, epochs, self.config.adversarial_weight,
                                 self.config.seed, self.run_dir, self.sample_health, lambda: self.interrupted,
                                 None if self.board is None else self.board.phase_epoch, self.precision,
                                 self.augment, self.clock if timed else None, first)
        phase.run(progress)
        self.draw_samples()


