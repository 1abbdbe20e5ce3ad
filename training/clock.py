"""The run's clock: a plan sized from the data that still finishes inside ``--time-limit``.

The default plan counts images seen (cvae_sdk.backends: SAMPLE_BUDGET, ADVERSARIAL_BUDGET), which
fits 20 minutes on the 2-core AVX-512 CPU it was sized on; on a slower CPU the same images take two
or three times as long. So a run keeps a clock: the seconds it has spent, across resumes (every
checkpoint saves them, ``adversarial.pt`` too). After each ELBO epoch it projects its end from the
median time of this process's epochs (the first, which builds the kernels, left out): the ELBO
epochs left, and the adversarial phase at PHASE_EPOCH_COST epochs per phase epoch. When that ends
past the limit less the export's reserve, in epochs of the same length
(:func:`cvae_sdk.backends.export_reserve`), the planned
lengths are shortened in the same proportion (:func:`fit_plan`). The shortened ELBO plan is saved in
the checkpoint, so ``--resume`` continues it; the phase checks the clock itself before each of its
epochs (:meth:`RunClock.time_left`). A length the user gave (``--epochs``, ``--adversarial-epochs``)
is never shortened.
"""

from __future__ import annotations

import math
import time
from typing import NamedTuple

from cvae_sdk.backends import EXPORT_RESERVE_S, TrainConfig


class RunClock:
    """Seconds a run has spent, those of the processes before this one included, against its deadline: the
    time limit (infinite without one) less ``reserve``, the export's share, which the trainer sets from its
    epochs' length."""

    def __init__(self, config: TrainConfig, started: float) -> None:
        """``started``: this process's ``time.monotonic()`` when the run began."""
        self.limit = 60.0 * config.time_limit if config.time_limit > 0 else math.inf
        self.reserve = EXPORT_RESERVE_S
        self.before, self.started = 0.0, started

    def restore(self, before: float) -> None:
        """Continue from a checkpoint that had spent ``before`` seconds (the work lost since is not counted)."""
        self.before, self.started = before, time.monotonic()

    def spent(self) -> float:
        return self.before + time.monotonic() - self.started

    def time_left(self) -> float:
        """Seconds until the deadline (negative past it; infinite without a limit)."""
        return self.limit - self.reserve - self.spent()


class Plan(NamedTuple):
    """Epochs still to run: ELBO epochs and adversarial phase epochs."""

    elbo: int
    phase: int


def fit_plan(left: Plan, fixed: Plan, epoch_seconds: float, phase_cost: float, time_left: float) -> Plan:
    """The epochs of ``left`` (those the run may shorten) that fit ``time_left`` seconds besides ``fixed`` (those it
    may not), an ELBO epoch taking ``epoch_seconds`` and a phase epoch ``phase_cost`` times as long: ``left`` as it
    is when it fits, else both cut in the same proportion, rounded down."""
    cost = epoch_seconds * (left.elbo + phase_cost * left.phase)
    spare = time_left - epoch_seconds * (fixed.elbo + phase_cost * fixed.phase)
    if cost <= spare or cost == 0:
        return left
    share = max(0.0, spare) / cost
    return Plan(math.floor(left.elbo * share), math.floor(left.phase * share))
