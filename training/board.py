"""TensorBoard logging of a run (``train --tensorboard``): every epoch's numbers and sample grid.

Event files go to ``RUN/tensorboard/``; ``tensorboard --logdir RUN/tensorboard`` shows them. The
scalars are the ones ``metrics.jsonl`` holds (under ``train/``, ``val/`` and ``samples/``), the
image is the grid ``samples.png`` shows, and the adversarial phase logs its epochs under
``adversarial/``. A resumed run drops the events past its checkpoint (TensorBoard's ``purge_step``),
so the curves show each epoch once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

BOARD_DIR = "tensorboard"
INSTALL = "pip install tensorboard (or 'cvae-sdk[train,tensorboard]')"
SCALARS = {"train_loss": "train/loss", "train_recon": "train/recon", "train_kl": "train/kl", "lr": "train/lr",
           "beta": "train/beta", "samples_per_s": "train/samples_per_s", "val_elbo": "val/elbo",
           "val_recon": "val/recon", "val_kl": "val/kl", "active_units": "val/active_units",
           "label_fidelity": "samples/label_fidelity", "worst_class_fidelity": "samples/worst_class_fidelity"}
PHASE_SCALARS = ("recon", "gan", "disc", "weight", "label_fidelity", "worst_class_fidelity", "diversity")


def check_installed() -> None:
    """Fail before any work when TensorBoard's writer cannot be imported, naming the install."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise ValueError(f"--tensorboard needs the tensorboard package; {INSTALL}") from None


class Board:
    """One run's TensorBoard writer; steps are epochs (and phase epochs), counted from 1."""

    def __init__(self, run_dir: Path, resumed_epoch: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(run_dir / BOARD_DIR), purge_step=resumed_epoch + 1 if resumed_epoch else None)

    def epoch(self, record: dict[str, Any], grid: np.ndarray) -> None:
        """An epoch's ``metrics.jsonl`` record and its sample grid (H, W, C) uint8."""
        step = int(record["epoch"])
        for key, tag in SCALARS.items():
            if record.get(key) is not None:
                self.writer.add_scalar(tag, float(record[key]), step)
        self.writer.add_image("samples", grid, step, dataformats="HWC")
        self.writer.flush()

    def phase_epoch(self, record: dict[str, Any]) -> None:
        step = int(record["adversarial_epoch"])
        for key in PHASE_SCALARS:
            self.writer.add_scalar(f"adversarial/{key}", float(record[key]), step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
