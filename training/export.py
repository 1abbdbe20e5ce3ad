"""Export the generative path (prior + decoder, never the encoder) to one self-describing ONNX file.

The graph maps (z, y) to pixel means with the sigmoid fused in; the prior p(z|y) travels as
metadata (see :mod:`cvae_sdk.artifact`). Every export passes ``onnx.checker`` with
``full_check=True`` and an onnxruntime-vs-PyTorch parity check before the file appears, written
atomically: a failed check writes nothing.
"""

from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cvae_sdk.artifact import (
    INPUT_Y,
    INPUT_Z,
    OUTPUT,
    ArtifactConfig,
    Prior,
    read_metadata,
    stored,
    write_metadata,
)
from cvae_sdk.atomic import atomic_path, writable_folder
from cvae_sdk.checks import check_temperature
from cvae_sdk.data import open_dataset
from cvae_sdk.latents import prior_latents
from cvae_sdk.quality import EvalClassifier, run_classifier_path
from cvae_sdk.validate import graph_problems

from .calibrate import SAMPLES_PER_CLASS, Calibration, calibrate_temperatures, calibration_key, prune_misread
from .checkpoint import load_checkpoint, resolve_checkpoint
from .contrast import MAX_CONTRAST, MIN_CONTRAST, ContrastChoice, choose_contrast, fold_contrast
from .model import CVAE, FoldedSubpixelDecoder, ModelConfig
from .onnx_export import export_module

PARITY_TOLERANCE = 1e-5
PARITY_BATCHES = (1, 2, 7, 64, 1024)
PRIOR_CHOICES = ("auto", "aggregate", "learned", "standard")
MIN_FIDELITY_SHARE = 0.5  # export refuses samples recognised less than half as often as real images


class ExportCheckError(ValueError):
    """An export failed a check (parity, accuracy); nothing was written."""


@dataclass(frozen=True)
class ExportResult:
    path: Path
    config: ArtifactConfig
    max_abs_diff: float
    calibration: Calibration | None = None
    contrast: ContrastChoice | None = None  # how the output contrast was chosen (None: given, or not chosen)


class GenerativePath(nn.Module):
    """(z (N, D), y (N, K) class weights) -> samples (N, C, H, W) in [0, 1]: a decoder and the sigmoid,
    its logits times ``contrast`` (the written file holds that factor folded into the decoder instead)."""

    def __init__(self, decoder: nn.Module, contrast: float = 1.0) -> None:
        super().__init__()
        self.decoder, self.contrast = decoder, contrast

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = self.decoder(z, y)
        return torch.sigmoid(logits if self.contrast == 1.0 else self.contrast * logits)


def exported_decoder(model: CVAE) -> nn.Module:
    """The decoder as export writes it: a sub-pixel one of two doublings folded (:class:`FoldedSubpixelDecoder`,
    the same function at about 1.3x the onnxruntime rate), any other as trained."""
    if model.cfg.arch == "conv" and model.cfg.upsample == "subpixel" and model.cfg.doublings == 2:
        return FoldedSubpixelDecoder.fold(model.decoder, model.cfg)
    return model.decoder


def load_model(source: Path) -> tuple[CVAE, dict[str, Any]]:
    """Rebuild a CVAE from a run folder (its best checkpoint) or a checkpoint file."""
    state = load_checkpoint(resolve_checkpoint(source))
    model = CVAE(ModelConfig.from_dict(state["model_config"]))
    model.load_state_dict(state["model"])
    return model.eval(), state


def choose_prior(model: CVAE, state: dict[str, Any], which: str) -> Prior:
    """The prior to ship: the aggregate-posterior fit when present ("auto"), or as named."""
    if which not in PRIOR_CHOICES:
        raise ValueError(f"prior must be one of {PRIOR_CHOICES}, got {which!r}")
    fit = state.get("aggregate_prior")
    if which == "aggregate" and fit is None:
        raise ValueError("this checkpoint holds no aggregate-posterior fit; train with "
                         "--aggregate-components >= 1, or export with --prior learned")
    if which in ("auto", "aggregate") and fit is not None:
        return prior_from_fit(fit)
    k, d = model.cfg.num_classes, model.cfg.latent_dim
    if which == "standard":
        mean, std = np.zeros((k, d)), np.ones((k, d))
    else:
        mean = model.prior.mean.detach().double().cpu().numpy()
        std = (0.5 * model.prior.logvar.detach().double()).exp().cpu().numpy()
    tril = np.zeros((k, 1, d, d))
    tril[:, 0, np.arange(d), np.arange(d)] = std
    return Prior(np.ones((k, 1)), mean[:, None, :], tril, "standard" if which == "standard" else "learned")


def prior_from_fit(fit: dict[str, torch.Tensor]) -> Prior:
    """The artifact's prior from a checkpoint's ``aggregate_prior`` (training/aggregate.py): the encoder's own
    posteriors (``scale_diag``) or a fitted mixture (``scale_tril``)."""
    if "scale_diag" in fit:  # at the precision the artifact stores, so calibration sees what it will sample
        return Prior(fit["weights"].numpy(), stored(fit["means"].numpy()), stored(fit["scale_diag"].numpy()),
                     "aggregate")
    return Prior(fit["weights"].numpy(), fit["means"].numpy(), fit["scale_tril"].numpy(), "aggregate")


def export_generator(source: Path, out: Path, *, prior: str = "auto", temperature: float | None = None,
                     contrast: float | None = None, metrics: dict[str, Any] | None = None,
                     allow_low_fidelity: bool = False) -> ExportResult:
    """Export ``source`` (run folder or checkpoint) to ``out``; returns the written artifact.

    With ``temperature=None`` and the run's evaluation classifier beside the checkpoint, each class
    gets a calibrated temperature (:mod:`cvae_sdk_training.calibrate`); without a classifier, 1.0.
    With ``contrast=None`` and that classifier, the output contrast is chosen on the run's training
    images (:mod:`cvae_sdk_training.contrast`); without them, 1.0 (the decoder as trained).
    A run whose samples that classifier reads as their label less than half as often as it reads
    real images is refused (:class:`ExportCheckError`) unless ``allow_low_fidelity``.
    """
    if out.suffix != ".onnx":
        raise ValueError(f"--out must end in .onnx, got {out}")
    if temperature is not None:
        check_temperature(temperature, "--temperature")
    if contrast is not None and not (math.isfinite(contrast) and MIN_CONTRAST <= contrast <= MAX_CONTRAST):
        raise ValueError(f"--contrast must lie in [{MIN_CONTRAST:g}, {MAX_CONTRAST:g}] (1: the decoder as "
                         f"trained), got {contrast}")
    writable_folder(out)  # before minutes of calibration, not after
    model, state = load_model(Path(source))
    chosen_prior = choose_prior(model, state, prior)
    seed = int(state["train_config"].get("seed", 0))
    classifier = run_classifier(Path(source), model.cfg.num_classes)
    calibration = None
    # Calibration and the contrast choice decode with the decoder as the file will hold it: the same function, and at
    # 64x64 colour the export took 170.2 s instead of 215.2 s, the same bytes written (results/export_time.jsonl).
    decoder = exported_decoder(model).eval()
    if temperature is None and classifier is not None:
        decode = torch_decoder(GenerativePath(decoder).eval())
        chosen_prior, dropped = prune_misread(decode, chosen_prior, classifier, seed=seed)
        calibration = replace(calibrate_temperatures(decode, chosen_prior, classifier, seed=seed), dropped=dropped)
    temps = calibration.temperatures if calibration is not None else None
    choice = None
    if contrast is None:
        choice = _choose_contrast(model, decoder, state, chosen_prior, classifier, temps or temperature or 1.0, seed)
        contrast = choice.contrast if choice is not None else 1.0
    if classifier is not None and not allow_low_fidelity:
        _check_fidelity(calibration, choice, classifier, model.cfg.num_classes, state)
    path_module = GenerativePath(model.decoder, contrast).eval()  # as trained: the parity reference
    folded = fold_contrast(copy.deepcopy(decoder), contrast, model.cfg.latent_dim,
                           model.cfg.num_classes)
    written = GenerativePath(folded).eval()  # what the file holds
    class_names = tuple(state.get("class_names") or [str(i) for i in range(model.cfg.num_classes)])
    metrics = dict(metrics if metrics is not None else state.get("metrics") or {})
    if calibration is not None and any(calibration.dropped):  # the codes prune_misread took out, per class
        metrics["prior_codes_dropped"] = dict(zip(class_names, calibration.dropped, strict=True))
    config = ArtifactConfig(
        num_classes=model.cfg.num_classes, class_names=class_names,
        latent_dim=model.cfg.latent_dim, sample_shape=model.cfg.image_shape, prior=chosen_prior,
        default_temperature=float(np.mean(temps)) if temps else (1.0 if temperature is None else float(temperature)),
        class_temperatures=temps,
        train_config=state["train_config"], model_config=state["model_config"],
        metrics=metrics,
        versions=_versions(), weights_sha256=weights_sha256(written), output_contrast=float(contrast))
    onnx_bytes = to_onnx_bytes(written, config)
    max_diff = check_parity(path_module, onnx_bytes, config)
    with atomic_path(out) as tmp:
        tmp.write_bytes(onnx_bytes)
    return ExportResult(out, config, max_diff, calibration, choice)


def _check_fidelity(calibration: Calibration | None, choice: ContrastChoice | None, classifier: EvalClassifier,
                    k: int, state: dict[str, Any]) -> None:
    """Refuse a model whose samples the run's classifier does not recognise: it draws grey blobs. The message
    names the time limit when it cut the run's plan (``state``: the checkpoint; training/clock.py)."""
    if calibration is not None:
        fidelity = float(np.mean(calibration.fidelity))
    elif choice is not None:
        fidelity = choice.fidelity[choice.contrast]
    else:
        return
    real = float(np.mean(classifier.class_accuracy(k)))
    if fidelity < MIN_FIDELITY_SHARE * real:
        planned, uncut = state.get("planned_epochs"), state.get("uncut_epochs")
        longer = (f"The time limit cut its plan from {uncut} to {planned} epochs: train again with a larger "
                  "--time-limit (0: none)" if planned is not None and uncut is not None and planned < uncut
                  else "Train longer (--resume --epochs)")
        raise ExportCheckError(
            f"the run's classifier recognises the requested label in only {fidelity:.0%} of its samples (and "
            f"{real:.0%} of real images): the model does not draw its classes yet. {longer}, check the labels, "
            "or export anyway with --allow-low-fidelity")


def _choose_contrast(model: CVAE, decoder: nn.Module, state: dict[str, Any], prior: Prior,
                     classifier: EvalClassifier | None, temperature: float | tuple[float, ...],
                     seed: int) -> ContrastChoice | None:
    """The output contrast for ``model``, whose ``decoder`` draws the samples (None: no classifier, or its
    training images are not here)."""
    if classifier is None:
        return None
    try:
        real = open_dataset(state["train_config"]["data"]).train
    except (ValueError, OSError, KeyError):
        return None
    if real.image_shape != model.cfg.image_shape:
        return None
    k = model.cfg.num_classes
    labels = np.repeat(np.arange(k), SAMPLES_PER_CLASS)                                     # (K*S,)
    temps = np.asarray(temperature, dtype=np.float64)
    z = prior_latents(prior, labels, calibration_key(seed), 0, temps if temps.ndim else float(temps))
    logits = torch_decoder(decoder)(z, np.eye(k, dtype=np.float32)[labels])                # (K*S, C, H, W)
    return choose_contrast(logits, labels, real, classifier, seed=seed)


def run_classifier(source: Path, num_classes: int) -> EvalClassifier | None:
    """The evaluation classifier a training run keeps beside its checkpoints, if it fits the model."""
    path = run_classifier_path(source)
    if not path.is_file():
        return None
    classifier = EvalClassifier.load(path)
    return classifier if classifier.meta.get("num_classes") == num_classes else None


def torch_decoder(module: nn.Module) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """z (N, D), y (N, K) -> images, in chunks, with PyTorch: the graph that export then checks for parity."""
    @torch.inference_mode()
    def decode(z: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.concatenate([module(torch.from_numpy(z[i:i + 2048]), torch.from_numpy(y[i:i + 2048])).numpy()
                               for i in range(0, len(z), 2048)])
    return decode


def to_onnx_bytes(module: nn.Module, config: ArtifactConfig) -> bytes:
    """The generative path as one self-contained ONNX file with the artifact metadata attached."""
    example = (torch.zeros(8, config.latent_dim), torch.eye(config.num_classes)[torch.arange(8) % config.num_classes])
    proto = export_module(module, example, input_names=[INPUT_Z, INPUT_Y], output_names=[OUTPUT])
    write_metadata(proto, config)
    read_metadata(proto, "exported model")  # what every reader will check
    data: bytes = proto.SerializeToString()
    return data


def check_parity(module: nn.Module, onnx_bytes: bytes, config: ArtifactConfig) -> float:
    """onnxruntime vs PyTorch on fixed seeds, every label, extreme z and several batch sizes."""
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    problems = graph_problems(session, config)  # the checks every Generator runs when it loads a file
    if problems:
        raise ExportCheckError("exported graph: " + "; ".join(problems) + "; nothing was written")
    rng = np.random.default_rng(1234)
    eye = np.eye(config.num_classes, dtype=np.float32)
    worst = 0.0
    for n in PARITY_BATCHES:
        z = rng.standard_normal((n, config.latent_dim)).astype(np.float32)
        if n >= 7:
            z[:3] = [[8.0], [-8.0], [0.0]]  # extreme and central codes
        y = eye[np.arange(n) % config.num_classes]
        got = session.run([OUTPUT], {INPUT_Z: z, INPUT_Y: y})[0]
        with torch.inference_mode():
            want = module(torch.from_numpy(z), torch.from_numpy(y)).numpy()
        if got.shape != (n, *config.sample_shape):
            raise ExportCheckError(f"parity: onnxruntime returned shape {got.shape} at batch {n}, "
                                   f"expected {(n, *config.sample_shape)}; nothing was written")
        worst = max(worst, float(np.abs(got - want).max()))
    if not worst <= PARITY_TOLERANCE:
        raise ExportCheckError(f"parity check failed: max |onnxruntime - torch| = {worst:.3g} > "
                               f"{PARITY_TOLERANCE}; nothing was written")
    return worst


def weights_sha256(module: nn.Module) -> str:
    """sha256 over the exported tensors, in state-dict order (name, then little-endian bytes)."""
    hasher = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        hasher.update(name.encode())
        hasher.update(tensor.detach().cpu().contiguous().numpy().astype("<f4").tobytes())
    return hasher.hexdigest()


def _versions() -> dict[str, str]:
    import onnx

    found = {"torch": torch.__version__, "onnx": onnx.__version__}
    for package in ("cvae-sdk", "onnxscript", "onnxruntime"):
        try:
            found[package] = version(package)
        except Exception:  # not installed as a distribution (e.g. running from a source tree)
            found[package] = "unknown"
    return found
