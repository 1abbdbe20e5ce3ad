"""The artifact contract: what a cvae-sdk ONNX file holds, and the validation of its metadata.

Graph:
  inputs   ``z``        float32 (N, latent_dim)   latent codes
           ``y``        float32 (N, num_classes)  class weights: a one-hot row per sample
  output   ``samples``  float32 (N, C, H, W)      pixel means in [0, 1]
  N is the one dynamic axis.

Metadata: ``metadata_props["cvae_sdk"]`` holds one JSON document (schema below, version
``FORMAT_VERSION``). It carries the label-conditioned prior p(z|y) as a per-label Gaussian
mixture, so onnxruntime and numpy alone can draw z and sample.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 3  # 2 adds class_temperatures, 3 diagonal priors (scale_diag); older files read as before
METADATA_KEY = "cvae_sdk"
PACKED_DTYPE = np.dtype("<f2")  # a diagonal prior's means and scales, packed (see pack())
INPUT_Z, INPUT_Y, OUTPUT = "z", "y", "samples"
KeyTypes = dict[str, type | tuple[type, ...]]
REQUIRED_KEYS: KeyTypes = {"format_version": int, "num_classes": int, "class_names": list, "latent_dim": int,
                           "sample_shape": list, "prior": dict, "default_temperature": (int, float)}
OPTIONAL_KEYS: KeyTypes = {"train_config": dict, "model_config": dict, "metrics": dict, "versions": dict,
                           "weights_sha256": str, "quantization": str, "producer": str,
                           "class_temperatures": list, "output_contrast": (int, float)}


@dataclass(frozen=True, eq=False)
class Prior:
    """p(z|y) as a mixture of M Gaussians per label: full-covariance, or diagonal (``scales`` (K, M, D)).

    A diagonal mixture is what the aggregate posterior itself is (one Gaussian per training image, the
    encoder's q(z|x,y)); it is stored and sampled without the (D, D) matrices, so it can hold thousands
    of components per label.
    """

    weights: np.ndarray     # (K, M), rows sum to 1
    means: np.ndarray       # (K, M, D)
    scales: np.ndarray      # (K, M, D, D) lower-triangular with a positive diagonal, or (K, M, D) positive
    source: str = "learned"

    @property
    def num_components(self) -> int:
        return int(self.weights.shape[1])

    @property
    def diagonal(self) -> bool:
        """Whether ``scales`` holds standard deviations (K, M, D) rather than Cholesky factors (K, M, D, D)."""
        return self.scales.ndim == 3

    @functools.cached_property
    def cdf(self) -> np.ndarray:
        """(K, M) cumulative component weights per label, computed once: sampling's hot path reads it."""
        cdf: np.ndarray = np.cumsum(self.weights, axis=1)
        return cdf

    def to_json(self) -> dict[str, Any]:
        if self.diagonal:  # thousands of codes: packed binary (PACKED_DTYPE), see pack()
            return {"type": "gaussian_mixture", "source": self.source, "weights": self.weights.tolist(),
                    "means": pack(self.means), "scale_diag": pack(self.scales)}
        return {"type": "gaussian_mixture", "source": self.source, "weights": self.weights.tolist(),
                "means": self.means.tolist(), "scale_tril": self.scales.tolist()}


def pack(array: np.ndarray) -> dict[str, Any]:
    """``array`` as ``{"dtype": "float16", "shape": [...], "base64": ...}``: its values as little-endian
    float16, base64-encoded. A diagonal prior's means and scales are stored so (a tenth of their decimal
    text); :func:`stored` gives the values a packed array reads back as."""
    data = np.ascontiguousarray(array, dtype=PACKED_DTYPE).tobytes()
    return {"dtype": "float16", "shape": list(array.shape), "base64": base64.b64encode(data).decode("ascii")}


def stored(array: np.ndarray) -> np.ndarray:
    """``array`` (float64) at the precision :func:`pack` keeps: what the artifact will sample with."""
    return np.asarray(array, dtype=PACKED_DTYPE).astype(np.float64)


def _unpack(doc: Any, name: str, where: str) -> np.ndarray:
    """A packed array (see :func:`pack`), or a nested list, as float64."""
    if not isinstance(doc, dict):
        return np.asarray(doc, dtype=np.float64)
    try:
        shape = tuple(int(n) for n in doc["shape"])
        data = base64.b64decode(doc["base64"], validate=True)
        if doc["dtype"] != "float16":
            raise ValueError(f"dtype must be float16, got {doc['dtype']!r}")
        return np.frombuffer(data, dtype=PACKED_DTYPE).reshape(shape).astype(np.float64)
    except (KeyError, ValueError, TypeError, binascii.Error) as err:
        raise ArtifactError(f"{where}: prior {name} is not a packed float16 array ({err})") from err


@dataclass(frozen=True, eq=False)
class ArtifactConfig:
    """Everything the runtime knows about a model, read from and checked against its metadata."""

    num_classes: int
    class_names: tuple[str, ...]
    latent_dim: int
    sample_shape: tuple[int, ...]
    prior: Prior
    default_temperature: float = 1.0
    format_version: int = FORMAT_VERSION
    train_config: dict[str, Any] = field(default_factory=dict)
    model_config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, Any] = field(default_factory=dict)
    weights_sha256: str = ""
    quantization: str = "none"
    producer: str = "cvae-sdk"
    class_temperatures: tuple[float, ...] | None = None  # per class, calibrated at export; else default
    output_contrast: float = 1.0  # the decoder's logits were scaled by this before the sigmoid, folded into its weights

    def sampling_temperature(self, temperature: float | None) -> float | np.ndarray:
        """What ``temperature=None`` means: the per-class temperatures (K,) when calibrated, else the default."""
        if temperature is not None:
            return temperature
        if self.class_temperatures is not None:
            return np.asarray(self.class_temperatures, dtype=np.float64)
        return self.default_temperature

    def to_json(self) -> str:
        doc = {"format_version": self.format_version, "num_classes": self.num_classes,
               "class_names": list(self.class_names), "latent_dim": self.latent_dim,
               "sample_shape": list(self.sample_shape), "prior": self.prior.to_json(),
               "default_temperature": self.default_temperature, "train_config": self.train_config,
               "model_config": self.model_config, "metrics": self.metrics, "versions": self.versions,
               "weights_sha256": self.weights_sha256, "quantization": self.quantization,
               "producer": self.producer}
        if self.class_temperatures is not None:
            doc["class_temperatures"] = list(self.class_temperatures)
        if self.output_contrast != 1.0:
            doc["output_contrast"] = self.output_contrast
        return json.dumps(doc)


class ArtifactError(ValueError):
    """A model file that is not a valid cvae-sdk artifact; the message names what is wrong."""


def read_metadata(model: Any, where: str = "model") -> ArtifactConfig:
    """The :class:`ArtifactConfig` stored in an ``onnx.ModelProto``'s metadata (validated)."""
    return parse_metadata({prop.key: prop.value for prop in model.metadata_props}, where)


def write_metadata(model: Any, config: ArtifactConfig) -> None:
    """Store ``config`` as an ``onnx.ModelProto``'s one ``cvae_sdk`` entry, replacing any earlier one;
    the model's other metadata entries stay."""
    entry = next((p for p in model.metadata_props if p.key == METADATA_KEY), None) or model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, config.to_json()


def parse_metadata(props: dict[str, str], where: str = "model") -> ArtifactConfig:
    """Validate ``metadata_props`` against the schema and build an :class:`ArtifactConfig`."""
    if METADATA_KEY not in props:
        raise ArtifactError(f"{where} is not a cvae-sdk artifact: its metadata has no {METADATA_KEY!r} "
                            f"entry (found keys {sorted(props)}); export it with `cvae-sdk export`, or wrap a decoder "
                            "trained elsewhere with `cvae-sdk wrap`")
    try:
        doc = json.loads(props[METADATA_KEY])
    except json.JSONDecodeError as err:
        raise ArtifactError(f"{where}: metadata {METADATA_KEY!r} is not valid JSON ({err})") from err
    if not isinstance(doc, dict):
        raise ArtifactError(f"{where}: metadata must be a JSON object, got {type(doc).__name__}")
    _check_types(doc, where)
    if doc["format_version"] > FORMAT_VERSION:
        raise ArtifactError(f"{where} has artifact format {doc['format_version']}, newer than this "
                            f"cvae-sdk reads ({FORMAT_VERSION}); upgrade: pip install -U cvae-sdk")
    if doc["format_version"] < 1:
        raise ArtifactError(f"{where}: format_version must be >= 1, got {doc['format_version']}")
    k, d = doc["num_classes"], doc["latent_dim"]
    names = doc["class_names"]
    if k < 1 or d < 1:
        raise ArtifactError(f"{where}: num_classes and latent_dim must be >= 1, got {k} and {d}")
    if len(names) != k or not all(isinstance(n, str) for n in names) or len(set(names)) != k:
        raise ArtifactError(f"{where}: class_names must be {k} distinct strings, got {names!r}")
    shape = doc["sample_shape"]
    if len(shape) != 3 or not all(isinstance(s, int) and s > 0 for s in shape):
        raise ArtifactError(f"{where}: sample_shape must be [C, H, W] of positive ints, got {shape!r}")
    if not (isinstance(doc["default_temperature"], (int, float)) and doc["default_temperature"] >= 0):
        raise ArtifactError(f"{where}: default_temperature must be a number >= 0")
    temps = doc.get("class_temperatures")
    if temps is not None and (len(temps) != k or not all(
            isinstance(t, (int, float)) and not isinstance(t, bool) and 0 <= t < float("inf") for t in temps)):
        raise ArtifactError(f"{where}: class_temperatures must be {k} finite numbers >= 0, got {temps!r}")
    contrast = doc.get("output_contrast", 1.0)
    if not (math.isfinite(contrast) and contrast > 0):
        raise ArtifactError(f"{where}: output_contrast must be a finite number > 0, got {contrast!r}")
    return ArtifactConfig(
        num_classes=k, class_names=tuple(names), latent_dim=d, sample_shape=tuple(shape),
        prior=_parse_prior(doc["prior"], k, d, where),
        default_temperature=float(doc["default_temperature"]), format_version=doc["format_version"],
        **{key: doc[key] for key in OPTIONAL_KEYS if key in doc and key not in ("class_temperatures",
                                                                                "output_contrast")},
        class_temperatures=None if temps is None else tuple(float(t) for t in temps), output_contrast=float(contrast))


def _check_types(doc: dict[str, Any], where: str) -> None:
    missing = sorted(set(REQUIRED_KEYS) - set(doc))
    if missing:
        raise ArtifactError(f"{where}: metadata lacks required key(s) {missing}")
    for key, kind in {**REQUIRED_KEYS, **OPTIONAL_KEYS}.items():
        if key in doc and (not isinstance(doc[key], kind) or isinstance(doc[key], bool)):
            raise ArtifactError(f"{where}: metadata key {key!r} has type {type(doc[key]).__name__}")


def _parse_prior(prior: dict[str, Any], k: int, d: int, where: str) -> Prior:
    if prior.get("type") != "gaussian_mixture":
        raise ArtifactError(f"{where}: prior type must be 'gaussian_mixture', got {prior.get('type')!r}")
    scale_key = "scale_diag" if "scale_diag" in prior else "scale_tril"
    try:
        weights = np.asarray(prior["weights"], dtype=np.float64)
        means = _unpack(prior["means"], "means", where)
        scales = _unpack(prior[scale_key], scale_key, where)
    except (KeyError, ValueError, TypeError) as err:
        raise ArtifactError(f"{where}: prior needs numeric weights, means and scale_tril or scale_diag "
                            f"({err})") from err
    m = weights.shape[1] if weights.ndim == 2 else -1
    scale_shape = (k, m, d) if scale_key == "scale_diag" else (k, m, d, d)
    expected = {"weights": ((k, m), weights), "means": ((k, m, d), means), scale_key: (scale_shape, scales)}
    for name, (shape, array) in expected.items():
        if m < 1 or array.shape != shape:
            raise ArtifactError(f"{where}: prior {name} has shape {array.shape}, expected {shape} "
                                f"for {k} classes and latent_dim {d}")
        if not np.isfinite(array).all():
            raise ArtifactError(f"{where}: prior {name} holds NaN or inf")
    if (weights < 0).any() or not np.allclose(weights.sum(1), 1.0, atol=1e-6):
        raise ArtifactError(f"{where}: prior weights must be >= 0 and sum to 1 per class")
    if scale_key == "scale_diag":
        if (scales <= 0).any():
            raise ArtifactError(f"{where}: prior scale_diag must be positive")
    else:
        diag = np.diagonal(scales, axis1=-2, axis2=-1)
        if (diag <= 0).any() or np.abs(np.triu(scales, 1)).max(initial=0.0) > 0:
            raise ArtifactError(f"{where}: prior scale_tril must be lower-triangular with a positive diagonal")
    return Prior(weights, means, scales, str(prior.get("source", "unknown")))


def variant_path(fp32: Path, variant: str) -> Path:
    """Where an artifact's quantised variant goes: ``model.onnx`` -> ``model.int8.onnx`` / ``model.fp16.onnx``."""
    return fp32.with_name(f"{fp32.stem}.{variant}.onnx")
