"""The built-in ``torch`` training backend, registered as ``cvae_sdk.training_backends: torch``.

Besides the contract (``train``, ``export``) it offers every optional capability the runtime
asks for through :func:`cvae_sdk.backends.capability`; each imports its module only when called.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch  # noqa: F401  (without the [train] extra the registry says which extra to install)

from cvae_sdk.backends import TrainConfig, TrainResult
from cvae_sdk.data import LabeledImages
from cvae_sdk.quality import EvalClassifier


class TorchBackend:
    """Trains with :mod:`cvae_sdk_training.trainer` and exports with :mod:`cvae_sdk_training.export`."""

    name = "torch"

    def train(self, config: TrainConfig, *, resume: bool = False, progress: bool = True) -> TrainResult:
        from .trainer import train

        return train(config, resume=resume, progress=progress)

    def export(self, source: Path, out: Path, **options: Any) -> Path:
        from .export import export_generator

        return export_generator(source, out, **options).path

    def launch(self, config: TrainConfig, *, nproc: int, resume: bool, progress: bool) -> int:
        """Train with ``nproc`` data-parallel processes under torchrun; returns its exit status."""
        from .distributed import launch

        return launch(self.name, config, nproc=nproc, resume=resume, progress=progress)

    def quantize(self, fp32: Path, out: Path, classifier: EvalClassifier, *, variant: str) -> dict[str, Any]:
        """Write the int8 or fp16 variant of ``fp32`` to ``out`` if it passes the fidelity gate."""
        from .quantize import quantize_artifact

        return quantize_artifact(fp32, out, classifier, variant=variant)  # type: ignore[arg-type]

    def export_for_evaluation(self, source: Path, folder: Path, temperature: float | None) -> Path:
        """A run or checkpoint as a temporary artifact in ``folder``."""
        from .evaluate_torch import export_for_evaluation

        return export_for_evaluation(source, folder, temperature)

    def likelihood_report(self, source: Path, test: LabeledImages, **options: Any) -> dict[str, Any]:
        """Test ELBO and importance-sampled -log p(x|y) of a run or checkpoint."""
        from .evaluate_torch import likelihood_report

        return likelihood_report(source, test, **options)

    def reconstruct(self, source: Path, images: Any, labels: Any) -> Any:
        """The run's reconstructions of ``images`` (N, C, H, W): encoder mean, then decoder."""
        from .evaluate_torch import reconstruct

        return reconstruct(source, images, labels)

    def train_classifier(self, data: str, out: Path, **options: Any) -> dict[str, float]:
        """Fit the evaluation classifier on ``data`` and export it to ``out``."""
        from .classifier import train_classifier

        return train_classifier(data, out, **options)

    def bench_engine(self, model: Path, threads: int, device: str, *, compiled: bool, to_host: bool,
                     graphs: bool = False) -> Any:
        """A PyTorch reference engine for ``cvae-sdk bench`` on the artifact's own weights."""
        from .bench_engines import torch_engine

        return torch_engine(model, threads, device, compiled=compiled, to_host=to_host, graphs=graphs)
