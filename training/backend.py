"""The built-in ``torch`` training backend, registered as ``cvae_sdk.training_backends: torch``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cvae_sdk.backends import TrainConfig, TrainResult


class TorchBackend:
    """Trains with :mod:`training.trainer` and exports with :mod:`training.export`."""

    name = "torch"

    def train(self, config: TrainConfig, *, resume: bool = False, progress: bool = True) -> TrainResult:
        from training.trainer import train

        return train(config, resume=resume, progress=progress)

    def export(self, source: Path, out: Path, **options: Any) -> Path:
        from training.export import export_generator

        return export_generator(source, out, **options).path
