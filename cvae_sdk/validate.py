"""Checking an ONNX file against the artifact contract (see :mod:`cvae_sdk.artifact` and README).

``graph_problems`` is what every ``Generator`` checks when it loads a file. ``validate_artifact``
(``cvae-sdk validate``) goes further: it runs the graph and reports each check, so a decoder
trained anywhere can be checked before it is served.

>>> from cvae_sdk import shipped_model_path
>>> report = validate_artifact(shipped_model_path())
>>> report.ok
True
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from cvae_sdk.artifact import INPUT_Y, INPUT_Z, OUTPUT, ArtifactConfig, ArtifactError, parse_metadata

FLOAT = "tensor(float)"
PARITY_ATOL = 1e-5      # a row must not depend on the other rows of its batch
LABEL_EFFECT_MIN = 1e-4  # the smallest max |change| in pixels from switching the label
PROBE_BATCH = 5


def graph_problems(session: ort.InferenceSession, config: ArtifactConfig) -> list[str]:
    """Ways the graph's inputs and output disagree with the contract and the metadata (empty: none)."""
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = {o.name: o for o in session.get_outputs()}
    if set(inputs) != {INPUT_Z, INPUT_Y} or OUTPUT not in outputs:
        return [f"graph inputs {sorted(inputs)} / outputs {sorted(outputs)} do not follow the contract "
                f"(inputs {INPUT_Z!r}, {INPUT_Y!r}; output {OUTPUT!r}); rename them, e.g. with `cvae-sdk wrap`"]
    problems = []
    for name, width in {INPUT_Z: config.latent_dim, INPUT_Y: config.num_classes}.items():
        arg = inputs[name]
        if len(arg.shape) != 2 or arg.shape[1] != width:
            problems.append(f"input {name!r} has shape {arg.shape} but the metadata says (N, {width}); "
                            "the metadata is inconsistent with the graph")
        problems += _type_and_axis_problems(f"input {name!r}", arg)
    out = outputs[OUTPUT]
    if len(out.shape) != 4 or tuple(out.shape[1:]) != tuple(config.sample_shape):
        problems.append(f"output shape {out.shape} disagrees with sample_shape {list(config.sample_shape)} "
                        "in the metadata")
    problems += _type_and_axis_problems(f"output {OUTPUT!r}", out)
    return problems


def _type_and_axis_problems(what: str, arg: Any) -> list[str]:
    problems = []
    if arg.type != FLOAT:
        problems.append(f"{what} has type {arg.type}; the contract is float32 ({FLOAT})")
    if arg.shape and isinstance(arg.shape[0], int):
        problems.append(f"{what} has a fixed batch dimension {arg.shape[0]}; axis 0 must be dynamic "
                        "(torch.onnx.export needs dynamic_shapes for it)")
    return problems


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class ValidationReport:
    """One entry per check, in the order they ran; later checks are skipped once one fails."""

    path: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    def to_json(self) -> str:
        return json.dumps({"path": self.path, "ok": self.ok, "checks": [asdict(c) for c in self.checks]})


def validate_artifact(path: str | Path) -> ValidationReport:
    """Check ``path`` against the contract: load, metadata, graph signature, then real runs."""
    report = ValidationReport(str(path))
    state: dict[str, Any] = {}
    steps: list[tuple[str, Callable[[], str]]] = [
        ("loads", lambda: _load(Path(path), state)),
        ("metadata", lambda: _metadata(state)),
        ("signature", lambda: _signature(state)),
        ("runs", lambda: _runs(state)),
        ("batch_independent", lambda: _batch_independent(state)),
        ("uses_label", lambda: _uses_label(state)),
    ]
    for name, step in steps:
        try:
            report.checks.append(Check(name, True, step()))
        except (ArtifactError, ValueError) as err:
            report.checks.append(Check(name, False, str(err)))
            break
    return report


def _load(path: Path, state: dict[str, Any]) -> str:
    if not path.is_file():
        raise ArtifactError(f"{path} does not exist")
    try:
        state["session"] = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own types for unreadable graphs
        raise ArtifactError(f"not a loadable ONNX model ({err})") from err
    return f"onnxruntime {ort.__version__} loads it"


def _metadata(state: dict[str, Any]) -> str:
    config = parse_metadata(state["session"].get_modelmeta().custom_metadata_map, "the model")
    state["config"] = config
    return (f"format {config.format_version}: {config.num_classes} classes, latent_dim {config.latent_dim}, "
            f"sample_shape {list(config.sample_shape)}, prior {config.prior.num_components} component(s)/class")


def _signature(state: dict[str, Any]) -> str:
    problems = graph_problems(state["session"], state["config"])
    if problems:
        raise ArtifactError("; ".join(problems))
    return f"{INPUT_Z}, {INPUT_Y} -> {OUTPUT}, float32, dynamic batch axis"


def _probe_inputs(config: ArtifactConfig, n: int) -> tuple[np.ndarray, np.ndarray]:
    """z spread around each label's first prior component, and cycling one-hot labels."""
    ids = np.arange(n) % config.num_classes
    offsets = np.linspace(-1.5, 1.5, n, dtype=np.float64)[:, None]
    z = (config.prior.means[ids, 0] + offsets).astype(np.float32)  # (n, D)
    return z, np.eye(config.num_classes, dtype=np.float32)[ids]


def _run(state: dict[str, Any], z: np.ndarray, y: np.ndarray) -> np.ndarray:
    out = state["session"].run([OUTPUT], {INPUT_Z: z, INPUT_Y: y})[0]
    return np.asarray(out)


def _runs(state: dict[str, Any]) -> str:
    config: ArtifactConfig = state["config"]
    for n in (1, PROBE_BATCH):
        out = _run(state, *_probe_inputs(config, n))
        if out.shape != (n, *config.sample_shape) or out.dtype != np.float32:
            raise ArtifactError(f"batch {n} gave {out.dtype} {out.shape}; expected float32 "
                                f"{(n, *config.sample_shape)}")
        if not np.isfinite(out).all() or out.min() < 0 or out.max() > 1:
            raise ArtifactError(f"batch {n} gave values in [{out.min()}, {out.max()}]; samples must be finite "
                                "pixel means in [0, 1] (end the graph with a Sigmoid, or wrap with --logits)")
    state["batch"] = out
    return f"batches 1 and {PROBE_BATCH} give float32 (N, {', '.join(map(str, config.sample_shape))}) in [0, 1]"


def _batch_independent(state: dict[str, Any]) -> str:
    z, y = _probe_inputs(state["config"], PROBE_BATCH)
    alone = np.concatenate([_run(state, z[i:i + 1], y[i:i + 1]) for i in range(PROBE_BATCH)])
    gap = float(np.abs(alone - state["batch"]).max())
    if gap > PARITY_ATOL:
        raise ArtifactError(f"a sample changes by {gap:.2e} with the rest of its batch (limit {PARITY_ATOL}); "
                            "the graph mixes rows (batch norm in training mode?)")
    return f"each row equals its batch-1 run (max |diff| {gap:.1e})"


def _uses_label(state: dict[str, Any]) -> str:
    config: ArtifactConfig = state["config"]
    if config.num_classes == 1:
        return "one class: nothing to condition on"
    z, _ = _probe_inputs(config, 1)
    eye = np.eye(config.num_classes, dtype=np.float32)
    first, second = (_run(state, z, eye[i:i + 1]) for i in (0, 1))
    change = float(np.abs(first - second).max())
    if change < LABEL_EFFECT_MIN:
        raise ArtifactError(f"switching the label from {config.class_names[0]!r} to {config.class_names[1]!r} "
                            f"changes no pixel by more than {change:.1e}: the decoder ignores y")
    return f"switching label 0 -> 1 moves pixels by up to {change:.3f}"
