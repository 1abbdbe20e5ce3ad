"""Label parsing: ints, integer arrays or class names become validated int64 class ids."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

from cvae_sdk.checks import positive_int

LabelInput = int | str | Sequence[int | str] | np.ndarray


def parse_labels(labels: LabelInput, class_names: Sequence[str]) -> np.ndarray:
    """Return int64 ids (L,) for ``labels``; names are looked up in ``class_names``.

    Raises ``TypeError`` for values that are not integers or names (floats, bools, NaN) and
    ``ValueError`` for empty input, ids outside [0, K-1] or unknown names.
    """
    k = len(class_names)
    if type(labels) is int and 0 <= labels < k:  # the common single-label request, without the loop
        return np.array([labels], dtype=np.int64)
    if isinstance(labels, np.ndarray) and labels.dtype.kind in "iu" and labels.ndim == 1 and labels.size:
        low, high = int(labels.min()), int(labels.max())  # vectorised path for large id arrays
        if low < 0 or high >= k:
            bad = low if low < 0 else high
            raise ValueError(f"label {bad} is out of range; labels must lie in [0, {k - 1}]")
        return labels.astype(np.int64)
    items = _as_list(labels)
    if not items:
        raise ValueError("labels is empty; pass at least one label")
    index = {name: i for i, name in enumerate(class_names)}
    ids = np.empty(len(items), dtype=np.int64)
    for position, item in enumerate(items):
        if isinstance(item, str):
            if item not in index:
                raise ValueError(f"unknown class name {item!r}; known classes: {list(class_names)}")
            ids[position] = index[item]
        elif isinstance(item, (bool, np.bool_)) or not isinstance(item, numbers.Integral):
            raise TypeError(f"labels must be ints or class names, got {item!r} "
                            f"({type(item).__name__}) at position {position}")
        elif not 0 <= int(item) < k:
            raise ValueError(f"label {int(item)} is out of range; labels must lie in [0, {k - 1}]")
        else:
            ids[position] = int(item)
    return ids


def text_label(value: str, class_names: Sequence[str]) -> int | str:
    """A label typed as text (a command line's ``--label``, a query string): a class name if it is
    one, else an int id; ``parse_labels`` then checks it like any other.

    >>> text_label("7", ["a", "b"]), text_label("b", ["a", "b"])
    (7, 'b')
    """
    if value in class_names:
        return value
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"unknown class name {value!r}; labels are class names {list(class_names)} "
                         f"or ids 0-{len(class_names) - 1}") from None


def _as_list(labels: LabelInput) -> list[object]:
    if isinstance(labels, np.ndarray):
        if labels.ndim > 1:
            raise ValueError(f"labels must be a scalar or 1-d, got an array of shape {labels.shape}")
        if labels.dtype.kind not in "iuU":
            raise TypeError(f"labels must be an integer or string array, got dtype {labels.dtype}")
        return [v.item() if labels.dtype.kind in "iu" else str(v) for v in labels.reshape(-1)]
    if isinstance(labels, (str, numbers.Number, np.generic)):
        return [labels]
    if isinstance(labels, Sequence):
        return list(labels)
    raise TypeError(f"labels must be an int, a class name or a sequence of them, got {type(labels).__name__}")


def request_labels(labels: LabelInput, num_samples_per_label: int, class_names: Sequence[str]) -> np.ndarray:
    """The label of every sample of a request (N,): each label repeated, in the order given."""
    return np.repeat(parse_labels(labels, class_names), samples_per_label(num_samples_per_label))


def samples_per_label(n: object) -> int:
    """``num_samples_per_label`` checked: a positive int (a TypeError for a float, as for labels)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"num_samples_per_label must be an int, got {type(n).__name__}")
    return positive_int(int(n), "num_samples_per_label")
