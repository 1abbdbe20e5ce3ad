"""Small shared rules with one home each: argument checks, even splits, uint8 pixels."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

# The prior's spread is multiplied by the temperature: 1 is the prior itself, calibrated classes sit
# at 0.6-1. Far beyond MAX_TEMPERATURE samples are noise, and at 1e308 the latents overflow to inf.
MAX_TEMPERATURE = 10.0


def check_temperature(value: Any, name: str = "temperature") -> float:
    """``value`` as a float if it is a number in [0, MAX_TEMPERATURE]; a TypeError or one-line ValueError else.

    >>> check_temperature(0.8)
    0.8
    >>> check_temperature(1e308)
    Traceback (most recent call last):
    ValueError: temperature must be finite and in [0, 10] (1 is the prior's own spread), got 1e+308
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not (math.isfinite(value) and 0 <= value <= MAX_TEMPERATURE):
        raise ValueError(f"{name} must be finite and in [0, {MAX_TEMPERATURE:g}] (1 is the prior's own spread), "
                         f"got {value}")
    return float(value)


def positive_int(value: Any, name: str) -> int:
    """``value`` if it is an int >= 1 (bools are not), else a ValueError naming ``name``.

    >>> positive_int(4, "max_batch")
    4
    >>> positive_int(0, "max_batch")
    Traceback (most recent call last):
    ValueError: max_batch must be an int >= 1, got 0
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return int(value)


def even_split(total: int, parts: int, index: int) -> tuple[int, int]:
    """The [start, stop) range of part ``index`` of ``parts`` over ``total`` items: contiguous, sizes
    differing by at most one, the larger parts first.

    >>> [even_split(10, 3, k) for k in range(3)]
    [(0, 4), (4, 7), (7, 10)]
    """
    base, extra = divmod(total, parts)
    start = index * base + min(index, extra)
    return start, start + base + (1 if index < extra else 0)


def to_uint8(images: np.ndarray) -> np.ndarray:
    """[0, 1] float pixels -> uint8, rounded half up after clipping; uint8 input is returned as is.

    The CUDA path's ``take_rows_uint8`` kernel computes the same ``x * 255 + 0.5``, truncated
    (decoders end in a sigmoid, so the clip changes nothing there).

    >>> to_uint8(np.array([0.0, 0.5, 1.0, 1.5], dtype=np.float32)).tolist()
    [0, 128, 255, 255]
    """
    if images.dtype == np.uint8:
        return images
    scaled = images * np.float32(255.0) + np.float32(0.5)
    np.clip(scaled, 0, 255, out=scaled)
    return scaled.astype(np.uint8)
