"""One request's steps outside the session: what it asks for, checked, and what it gets back.

``check_request`` turns a call's arguments into a :class:`Request` (class ids, noise key,
temperature, output type) or raises the one-line error naming the fix, before any work;
``package`` wraps rendered samples as the requested output type. ``Generator.generate`` and the
micro-batcher both go through these two, so a request served alone or in a shared run is checked
and packaged the same way; drawing latents (:mod:`cvae_sdk.latents`) and decoding them
(``Generator.generate(..., latents=z)``) are the steps between.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

import numpy as np

from cvae_sdk.artifact import ArtifactConfig
from cvae_sdk.checks import check_temperature, to_uint8
from cvae_sdk.fastpath import DeviceSamples
from cvae_sdk.labels import LabelInput, request_labels
from cvae_sdk.latents import request_key

OutputType = Literal["np", "uint8", "pil", "device"]
OUTPUT_TYPES = ("np", "uint8", "pil", "device")
Samples = TypeVar("Samples", np.ndarray, list[Any], DeviceSamples)


@dataclass(frozen=True, eq=False)
class GenerationOutput(Generic[Samples]):
    """Samples in request order, with the label and the latent code of each.

    ``samples`` is typed by the request's ``output_type``: an ``np.ndarray`` (N, C, H, W) for
    ``"np"`` (float32 in [0, 1]) and ``"uint8"``, a list of PIL images for ``"pil"``, and
    :class:`DeviceSamples` (GPU memory, DLPack) for ``"device"``.
    """

    samples: Samples
    labels: np.ndarray      # int64 (N,)
    latents: np.ndarray     # float32 (N, latent_dim)
    start: int = 0          # index of the first sample within its request (chunks, shards)


@dataclass(frozen=True, eq=False)
class Request:
    """A checked request: the class id of every sample (N,), its noise key, its temperature and output type."""

    labels: np.ndarray                    # int64 (N,)
    key: np.ndarray                       # the noise stream's key (cvae_sdk.latents)
    temperature: float | np.ndarray       # one value, or one per class
    output_type: str


def check_request(config: ArtifactConfig, labels: LabelInput, num_samples_per_label: int = 1, *,
                  rng: Any = None, temperature: float | None = None, output_type: str = "np") -> Request:
    """Validate a request without drawing anything (default temperature: the artifact's, per class if calibrated)."""
    ids = request_labels(labels, num_samples_per_label, config.class_names)
    check_output_type(output_type)
    return Request(ids, request_key(rng), resolve_temperature(config, temperature), output_type)


def resolve_temperature(config: ArtifactConfig, temperature: float | None) -> float | np.ndarray:
    """The temperature a request samples at: checked if given, else the artifact's (per class if calibrated)."""
    return config.sampling_temperature(None) if temperature is None else check_temperature(temperature)


def check_output_type(output_type: str) -> None:
    if output_type not in OUTPUT_TYPES:
        raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")


def package(samples: Any, ids: np.ndarray, z: np.ndarray, output_type: str, start: int = 0) -> GenerationOutput[Any]:
    """Wrap rendered samples (float32, uint8 or on the device) as the requested output type."""
    if output_type == "uint8":  # e.g. a micro-batch rendered as float32 (uint8 input stays as it is)
        samples = to_uint8(samples)
    return GenerationOutput(to_pil(samples) if output_type == "pil" else samples, ids, z, start)


def to_pil(images: np.ndarray) -> list[Any]:
    try:
        from PIL import Image
    except ImportError as err:
        raise ImportError("output_type='pil' needs Pillow: pip install 'cvae-sdk[pil]'") from err
    hwc = to_uint8(images).transpose(0, 2, 3, 1)  # (N, H, W, C)
    return [Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img) for img in hwc]
