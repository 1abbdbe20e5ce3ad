"""The time limit: a plan sized from the data is cut to fit, lengths given are kept, and resume keeps the cut."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import tiny_config
from cvae_sdk_training.checkpoint import load_checkpoint
from cvae_sdk_training.clock import Plan, fit_plan
from cvae_sdk_training.trainer import train
from typer.testing import CliRunner

from cvae_sdk.backends import EXPORT_EPOCHS, EXPORT_RESERVE_S, TrainConfig, export_reserve
from cvae_sdk.cli import app

# A limit far below the export's reserve: the deadline has passed before the first epoch ends.
PAST_DEADLINE = 0.001


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_fit_plan_keeps_a_plan_that_fits_and_cuts_both_parts_in_proportion() -> None:
    assert fit_plan(Plan(10, 4), Plan(0, 0), 2.0, 3.0, 44.0) == Plan(10, 4)  # 2 * (10 + 3 * 4) = 44 s
    assert fit_plan(Plan(10, 4), Plan(0, 0), 2.0, 3.0, 22.0) == Plan(5, 2)  # half the time: half of each
    # lengths the user gave (fixed) are paid first, from the same time
    assert fit_plan(Plan(10, 0), Plan(0, 4), 2.0, 3.0, 34.0) == Plan(5, 0)
    assert fit_plan(Plan(10, 4), Plan(0, 0), 2.0, 3.0, -5.0) == Plan(0, 0)  # past the deadline
    assert fit_plan(Plan(10, 4), Plan(0, 0), 2.0, 3.0, math.inf) == Plan(10, 4)  # no limit


def test_the_export_reserve_counts_in_the_runs_epochs_with_a_floor() -> None:
    assert export_reserve(0.5) == export_reserve(EXPORT_RESERVE_S / EXPORT_EPOCHS) == EXPORT_RESERVE_S
    assert export_reserve(44.73) == pytest.approx(EXPORT_EPOCHS * 44.73)  # 64x64 colour without AVX-512


def test_a_plan_that_cannot_fit_is_cut_and_resume_keeps_the_cut(tiny_npz: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    config = tiny_config(tiny_npz, run, epochs=None, adversarial_epochs=None, aggregate_components=0,
                         time_limit=PAST_DEADLINE)
    train(config, progress=True)
    err = capsys.readouterr().err
    assert "so ELBO training from" in err and "and the adversarial phase from" in err
    assert "--time-limit 0.001 minutes" in err and "--time-limit 0 runs the whole plan" in err
    assert "the adversarial phase ends after 0 of its" in err
    last, best = load_checkpoint(run / "last.pt"), load_checkpoint(run / "best.pt")
    # the first epoch builds kernels, so the clock first judges after the second
    assert last["epoch"] == last["planned_epochs"] == 2 and last["phase_cap"] == 0
    plan = config.planned_epochs(270, 12 * 12)  # tiny: 300 images less the 10% held out, 1x12x12
    assert [r["planned_epochs"] for r in _metrics(run)] == [plan, 2]
    assert best["adversarial"]["epochs"] == 0 and best["adversarial"]["time_limited"] is True
    assert last["run_seconds"] > 0
    train(config, resume=True, progress=False)  # the cut plan is done: nothing more to run
    again = load_checkpoint(run / "last.pt")
    assert again["epoch"] == 2 and all(torch.equal(v, last["model"][k]) for k, v in again["model"].items())
    assert len(_metrics(run)) == 2
    # two epochs draw the tiny classes at chance: export's refusal names the limit that cut the plan
    result = CliRunner().invoke(app, ["export", str(run), "--out", str(tmp_path / "m.onnx")])
    assert result.exit_code == 2 and "does not draw its classes yet" in result.output
    assert f"The time limit cut its plan from {plan} to 2 epochs" in result.output and "--time-limit" in result.output


def test_lengths_given_are_kept_past_the_deadline(tiny_npz: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(tiny_config(tiny_npz, run, epochs=3, adversarial_epochs=1, aggregate_components=0,
                      time_limit=PAST_DEADLINE), progress=False)
    last, phase = load_checkpoint(run / "last.pt"), load_checkpoint(run / "best.pt")["adversarial"]
    assert last["epoch"] == last["planned_epochs"] == 3 and last["phase_cap"] is None
    assert phase["planned_epochs"] == 1 and phase["time_limited"] is False
    assert phase["epochs"] + (phase["stopped"] is not None) == 1


def test_a_run_inside_its_limit_is_the_run_without_one(tiny_npz: Path, tmp_path: Path) -> None:
    weights = []
    for limit in (20.0, 0.0):
        run = tmp_path / f"limit-{limit:g}"
        train(tiny_config(tiny_npz, run, epochs=3, adversarial_epochs=None, aggregate_components=0,
                          time_limit=limit), progress=False)
        best = load_checkpoint(run / "best.pt")
        assert best["adversarial"]["time_limited"] is False and best["adversarial"]["planned_epochs"] >= 1
        weights.append(best["model"])
    assert all(torch.equal(v, weights[1][k]) for k, v in weights[0].items())


def test_resume_continues_the_clock(tiny_npz: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(tiny_config(tiny_npz, run, aggregate_components=0), progress=False)
    before = load_checkpoint(run / "last.pt")["run_seconds"]
    train(tiny_config(tiny_npz, run, epochs=3, aggregate_components=0), resume=True, progress=False)
    assert load_checkpoint(run / "last.pt")["run_seconds"] > before > 0


@pytest.mark.parametrize("minutes", [-1.0, math.nan, math.inf])
def test_a_time_limit_must_be_minutes(minutes: float) -> None:
    with pytest.raises(ValueError, match="time_limit must be a number of minutes >= 0"):
        TrainConfig(data="d", out="o", time_limit=minutes)


def test_runs_saved_before_the_time_limit_resume_without_one() -> None:
    saved = {k: v for k, v in TrainConfig(data="d", out="o").to_dict().items() if k != "time_limit"}
    assert TrainConfig.from_dict(saved).time_limit == 0.0
