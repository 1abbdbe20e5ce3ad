"""The loss-curve PNG written into a run folder when training ends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cvae_sdk.atomic import atomic_path


def plot_loss_curves(history: list[dict[str, Any]], out: Path) -> None:
    """Train loss and validation -ELBO (left), KL and active units (right), per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(epochs, [r["train_loss"] for r in history], marker="o", label="train loss (recon + beta KL)")
    left.plot(epochs, [-r["val_elbo"] for r in history], marker="o", label="validation -ELBO")
    left.set(xlabel="epoch", ylabel="nats per image", title="Loss")
    left.legend()
    right.plot(epochs, [r["val_kl"] for r in history], marker="o", color="tab:green", label="validation KL")
    right.set(xlabel="epoch", ylabel="nats per image", title="KL and active units")
    twin = right.twinx()
    twin.plot(epochs, [r["active_units"] for r in history], marker="s", color="tab:red", label="active units")
    twin.set_ylabel("active units")
    right.legend(loc="upper left")
    twin.legend(loc="lower right")
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
