"""Checkpoints: plain dicts of tensors and primitives, written atomically, read with weights_only."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cvae_sdk.atomic import atomic_path

CHECKPOINT_FORMAT = 1
LAST, BEST = "last.pt", "best.pt"


@dataclass
class EpochPosition:
    """Where an epoch stands: its batch order, steps done, running loss sums and time; a Ctrl-C checkpoint
    saves it (``to_state``) so that ``--resume`` continues the epoch where it stopped."""

    perm: torch.Tensor      # (N,) the epoch's batch order
    sums: list[float]       # the loop's running loss sums, one per loss it reports
    step: int = 0
    seconds: float = 0.0

    def to_state(self) -> dict[str, Any]:
        return {"perm": self.perm, "step": self.step, "sums": torch.tensor(self.sums, dtype=torch.float64),
                "seconds": self.seconds}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> EpochPosition:
        return cls(state["perm"], [float(v) for v in state["sums"]], int(state["step"]), float(state["seconds"]))


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write ``state`` to ``path`` via a temp file and a rename: a kill leaves the old file intact."""
    with atomic_path(path) as tmp:
        torch.save({"format": CHECKPOINT_FORMAT, **state}, tmp)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``: no code runs from the file)."""
    if not path.is_file():
        raise ValueError(f"no checkpoint at {path}; pass a run folder holding {LAST} or {BEST}, or a .pt file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt or foreign files
        raise ValueError(f"{path} is not a readable cvae-sdk checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a cvae-sdk checkpoint of format {CHECKPOINT_FORMAT}")
    return state


def resolve_checkpoint(source: Path) -> Path:
    """A run folder resolves to its best checkpoint; a file is taken as it is."""
    if source.is_dir():
        for name in (BEST, LAST):
            if (source / name).is_file():
                return source / name
        raise ValueError(f"run folder {source} holds no {BEST} or {LAST}; train first")
    return source
