"""Export the generative path (prior + decoder, never the encoder) to one self-describing ONNX file.

The graph maps (z, y) to pixel means with the sigmoid fused in; the prior p(z|y) travels as
metadata (see :mod:`cvae_sdk.artifact`). Every export passes ``onnx.checker`` with
``full_check=True`` and an onnxruntime-vs-PyTorch parity check before the file appears, written
atomically: a failed check writes nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cvae_sdk.artifact import (
    INPUT_Y,
    INPUT_Z,
    METADATA_KEY,
    OUTPUT,
    ArtifactConfig,
    Prior,
    parse_metadata,
)
from cvae_sdk.atomic import atomic_path
from training.checkpoint import load_checkpoint, resolve_checkpoint
from training.model import CVAE, ModelConfig

OPSET = 18
PARITY_TOLERANCE = 1e-5
PARITY_BATCHES = (1, 2, 7, 64, 1024)
PRIOR_CHOICES = ("auto", "aggregate", "learned", "standard")


class ExportCheckError(ValueError):
    """An export failed a check (parity, accuracy); nothing was written."""


@dataclass(frozen=True)
class ExportResult:
    path: Path
    config: ArtifactConfig
    max_abs_diff: float


class GenerativePath(nn.Module):
    """(z (N, D), y (N, K) class weights) -> samples (N, C, H, W) in [0, 1]."""

    def __init__(self, model: CVAE) -> None:
        super().__init__()
        self.decoder = model.decoder

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(z, y))


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
        return Prior(fit["weights"].numpy(), fit["means"].numpy(), fit["scale_tril"].numpy(), "aggregate")
    k, d = model.cfg.num_classes, model.cfg.latent_dim
    if which == "standard":
        mean, std = np.zeros((k, d)), np.ones((k, d))
    else:
        mean = model.prior.mean.detach().double().numpy()
        std = (0.5 * model.prior.logvar.detach().double()).exp().numpy()
    tril = np.zeros((k, 1, d, d))
    tril[:, 0, np.arange(d), np.arange(d)] = std
    return Prior(np.ones((k, 1)), mean[:, None, :], tril, "standard" if which == "standard" else "learned")


def export_generator(source: Path, out: Path, *, prior: str = "auto", temperature: float = 1.0,
                     metrics: dict[str, Any] | None = None) -> ExportResult:
    """Export ``source`` (run folder or checkpoint) to ``out``; returns the written artifact."""
    if out.suffix != ".onnx":
        raise ValueError(f"--out must end in .onnx, got {out}")
    model, state = load_model(Path(source))
    path_module = GenerativePath(model).eval()
    config = ArtifactConfig(
        num_classes=model.cfg.num_classes,
        class_names=tuple(state.get("class_names") or [str(i) for i in range(model.cfg.num_classes)]),
        latent_dim=model.cfg.latent_dim, sample_shape=model.cfg.image_shape,
        prior=choose_prior(model, state, prior), default_temperature=float(temperature),
        train_config=state["train_config"], model_config=state["model_config"],
        metrics=metrics if metrics is not None else dict(state.get("metrics") or {}),
        versions=_versions(), weights_sha256=weights_sha256(path_module))
    onnx_bytes = to_onnx_bytes(path_module, config)
    max_diff = check_parity(path_module, onnx_bytes, config)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        tmp.write_bytes(onnx_bytes)
    return ExportResult(out, config, max_diff)


def to_onnx_bytes(module: nn.Module, config: ArtifactConfig) -> bytes:
    """Dynamo export with a dynamic batch, one self-contained file and the metadata attached."""
    import onnx

    batch = torch.export.Dim("batch")
    example = (torch.zeros(8, config.latent_dim), torch.eye(config.num_classes)[torch.arange(8) % config.num_classes])
    with tempfile.TemporaryDirectory() as folder, quiet_exporter():
        raw = Path(folder) / "model.onnx"
        torch.onnx.export(module, example, raw, dynamo=True, external_data=False, opset_version=OPSET,
                          input_names=[INPUT_Z, INPUT_Y], output_names=[OUTPUT],
                          dynamic_shapes={"z": {0: batch}, "y": {0: batch}}, verbose=False)
        proto = onnx.load(raw)
    onnx.helper.set_model_props(proto, {METADATA_KEY: config.to_json()})
    proto.producer_name = "cvae-sdk"
    onnx.checker.check_model(proto, full_check=True)
    parse_metadata({p.key: p.value for p in proto.metadata_props}, "exported model")
    data: bytes = proto.SerializeToString()
    return data


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
    """Hide the exporter's chatter (missing torchvision ops, deprecations) that is not ours to fix."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "onnxscript")]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)


def check_parity(module: nn.Module, onnx_bytes: bytes, config: ArtifactConfig) -> float:
    """onnxruntime vs PyTorch on fixed seeds, every label, extreme z and several batch sizes."""
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    _check_io(session, config)
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


def _check_io(session: Any, config: ArtifactConfig) -> None:
    inputs = {i.name: i for i in session.get_inputs()}
    if set(inputs) != {INPUT_Z, INPUT_Y} or [o.name for o in session.get_outputs()] != [OUTPUT]:
        raise ExportCheckError(f"exported graph has inputs {sorted(inputs)} and outputs "
                               f"{[o.name for o in session.get_outputs()]}, not z, y -> samples")
    for name in (INPUT_Z, INPUT_Y):
        if isinstance(inputs[name].shape[0], int):
            raise ExportCheckError(f"exported input {name!r} has a fixed batch {inputs[name].shape[0]}; "
                                   "the batch axis must be dynamic")


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
