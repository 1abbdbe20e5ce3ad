"""The trainer: checkpoints, exact resume, seeded reproducibility, metrics, guard-rails."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_config
from cvae_sdk_training.checkpoint import load_checkpoint
from cvae_sdk_training.trainer import TrainingDiverged, train

from cvae_sdk.backends import MAX_ADVERSARIAL_EPOCHS, TrainConfig


def _metrics(run: Path) -> list[dict[str, float]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_run_folder_contents(tiny_run: Path) -> None:
    assert {"best.pt", "last.pt", "metrics.jsonl", "loss_curve.png"} <= {p.name for p in tiny_run.iterdir()}
    assert (tiny_run / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    with Image.open(tiny_run / "samples.png") as grid:  # redrawn each epoch: 8 samples of every class, scale 2
        assert grid.width > 8 * 2 * 8 and grid.height >= 3 * 2 * 8
    records = _metrics(tiny_run)
    assert [r["epoch"] for r in records] == [1, 2]
    for key in ("train_loss", "train_recon", "train_kl", "val_elbo", "kl_per_dim", "active_units", "samples_per_s"):
        assert key in records[0]
    assert len(records[0]["kl_per_dim"]) == 4


def test_checkpoint_round_trip_with_weights_only(tiny_run: Path) -> None:
    state = torch.load(tiny_run / "last.pt", map_location="cpu", weights_only=True)
    assert state["epoch"] == 2 and state["model_config"]["latent_dim"] == 4
    assert state["train_config"]["seed"] == 0
    best = load_checkpoint(tiny_run / "best.pt")
    assert set(best["aggregate_prior"]) == {"weights", "means", "scale_diag"}


def test_default_prior_is_the_encoders_posterior_of_every_training_image(tiny_npz: Path, tiny_run: Path) -> None:
    """One equally weighted Gaussian per training image of each label: q(z|x,y)'s mean and standard deviation;
    smaller labels padded to the largest by repeating their own codes at weight 0."""
    from cvae_sdk_training.export import load_model
    from cvae_sdk_training.splits import split_validation

    from cvae_sdk.data import load_dataset

    fit = load_checkpoint(tiny_run / "best.pt")["aggregate_prior"]
    model, state = load_model(tiny_run)
    train_split, _ = split_validation(load_dataset(str(tiny_npz)).train, state["train_config"]["val_fraction"], 0)
    counts = np.bincount(train_split.labels, minlength=3)
    assert fit["means"].shape == fit["scale_diag"].shape == (3, counts.max(), 4)
    assert ((fit["weights"] > 0).sum(1).numpy() == counts).all()
    torch.testing.assert_close(fit["weights"].sum(1), torch.ones(3, dtype=torch.float64))
    with torch.no_grad():
        mu, logvar = model.encode(torch.from_numpy(train_split.images),
                                  torch.from_numpy(train_split.labels.astype(np.int64)))
    for k in range(3):
        real = fit["weights"][k] > 0
        want = torch.cat([mu, (0.5 * logvar).exp()], 1)[torch.from_numpy(train_split.labels == k)].double()
        got = torch.cat([fit["means"][k][real], fit["scale_diag"][k][real]], 1)
        assert torch.allclose(got[got[:, 0].argsort()], want[want[:, 0].argsort()], atol=1e-6)
        padded = torch.cat([fit["means"][k][~real], fit["scale_diag"][k][~real]], 1)
        assert all((row == got).all(1).any() for row in padded)  # repeats of the label's own codes


def test_code_budget_keeps_a_share_of_every_label(tiny_npz: Path, tiny_run: Path) -> None:
    """Beyond the budget each label keeps a seeded random share of its images, at least one."""
    from cvae_sdk_training.aggregate import aggregate_posterior
    from cvae_sdk_training.export import load_model

    from cvae_sdk.data import load_dataset

    model, _ = load_model(tiny_run)
    data = load_dataset(str(tiny_npz)).train
    x, y = torch.from_numpy(data.images), torch.from_numpy(data.labels.astype(np.int64))
    small = aggregate_posterior(model, x, y, budget=30, seed=0)
    assert ((small["weights"] > 0).sum(1) == torch.from_numpy(np.bincount(data.labels) * 30 // 300)).all()
    again = aggregate_posterior(model, x, y, budget=30, seed=0)
    assert all(torch.equal(small[key], again[key]) for key in small)
    assert (aggregate_posterior(model, x, y, budget=1, seed=0)["weights"] > 0).sum(1).tolist() == [1, 1, 1]


def test_same_seed_same_losses(tiny_npz: Path, tiny_run: Path, tmp_path: Path) -> None:
    train(tiny_config(tiny_npz, tmp_path / "again"), progress=False)
    first, second = _metrics(tiny_run), _metrics(tmp_path / "again")
    for a, b in zip(first, second, strict=True):
        assert a["train_loss"] == b["train_loss"] and a["val_elbo"] == b["val_elbo"]


@pytest.mark.parametrize("augment", ["shift", "flip"])
def test_resume_equals_uninterrupted(tiny_npz: Path, tmp_path: Path, augment: str) -> None:
    """Extending a run with --resume --epochs: exact with a constant rate (a cosine one follows the new total)."""
    full = tmp_path / "full"
    flat = {"aggregate_components": 0, "lr_schedule": "constant", "augment": augment}  # augmented runs resume exactly
    train(tiny_config(tiny_npz, full, epochs=3, **flat), progress=False)
    part = tmp_path / "part"
    train(tiny_config(tiny_npz, part, epochs=1, **flat), progress=False)
    train(tiny_config(tiny_npz, part, epochs=3, **flat), resume=True, progress=False)
    # the resumed run raises the same epoch-3 alarms as the uninterrupted one (a 3-epoch tiny run looks collapsed)
    assert [r["alarms"] for r in _metrics(part)] == [r["alarms"] for r in _metrics(full)]
    assert _metrics(full)[-1]["alarms"] != {}
    for a, b in zip(_metrics(full), _metrics(part), strict=True):
        assert a["train_loss"] == b["train_loss"] and a["val_elbo"] == b["val_elbo"]
    wa, wb = load_checkpoint(full / "last.pt")["model"], load_checkpoint(part / "last.pt")["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_existing_run_needs_resume(tiny_npz: Path, tiny_run: Path) -> None:
    with pytest.raises(ValueError, match="--resume"):
        train(tiny_config(tiny_npz, tiny_run), progress=False)


def test_conv_arch_trains(tiny_npz: Path, tmp_path: Path) -> None:
    result = train(tiny_config(tiny_npz, tmp_path / "conv", arch="conv", epochs=1), progress=False)
    assert np.isfinite(result.best_val_elbo)


def test_diverging_loss_stops_and_keeps_last_good_checkpoint(tiny_npz: Path, tmp_path: Path) -> None:
    run = tmp_path / "nan"
    train(tiny_config(tiny_npz, run, epochs=1, aggregate_components=0), progress=False)
    before = load_checkpoint(run / "last.pt")
    with pytest.raises(TrainingDiverged, match="last good checkpoint"):
        _train_with_lr(tiny_npz, run)
    after = load_checkpoint(run / "last.pt")
    assert after["epoch"] == before["epoch"] == 1
    done = subprocess.run([sys.executable, "-m", "cvae_sdk", "train", "--data", str(tiny_npz), "--out", str(run),
                           "--epochs", "3", "--resume", "--quiet"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and done.stderr.startswith("error: loss became") and "Traceback" not in done.stderr


def _train_with_lr(data: Path, run: Path) -> None:
    """Resume the run with a learning rate so large that the loss overflows."""
    state = torch.load(run / "last.pt", map_location="cpu", weights_only=True)
    state["train_config"]["lr"] = 1e12
    torch.save(state, run / "last.pt")
    train(tiny_config(data, run, epochs=3, aggregate_components=0), resume=True, progress=False)


def test_label_fidelity_is_logged_and_ignored_labels_warn(tiny_npz: Path, tiny_classifier: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    healthy = train(tiny_config(tiny_npz, tmp_path / "ok", epochs=8, batch_size=16, lr=3e-3, arch="mlp",
                                beta=1.0, lr_schedule="constant", classifier=str(tiny_classifier),
                                aggregate_components=0), progress=False)
    # a tiny run may still mix classes up at its first checked epochs; by the last it draws every class
    assert healthy.history[-1]["alarms"] == {} and all(r["alarms"] == {} for r in healthy.history[:2])
    assert all(0.0 <= r["label_fidelity"] <= 1.0 for r in healthy.history)
    assert [r["label_fidelity"] for r in _metrics(tmp_path / "ok")] == [r["label_fidelity"] for r in healthy.history]
    assert healthy.history[-1]["label_fidelity"] > 0.9
    # labels shuffled against the images: the decoder learns to ignore them, and the guard-rail says so
    with np.load(tiny_npz) as archive:
        images, labels = archive["images"], archive["labels"]
    shuffled = tmp_path / "shuffled.npz"
    np.savez(shuffled, images=images, labels=np.random.default_rng(0).permutation(labels))
    capsys.readouterr()
    train(tiny_config(shuffled, tmp_path / "bad", epochs=8, batch_size=16, lr=3e-3,
                      classifier=str(tiny_classifier), aggregate_components=0), progress=False)
    printed = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: ")]
    kinds = [kind for r in _metrics(tmp_path / "bad") for kind in r["alarms"]]
    assert "ignored_label" in kinds and set(kinds) <= {"ignored_label", "collapse", "class_not_drawn"}
    # one console line per kind, the first time it holds; metrics.jsonl keeps every epoch's
    assert len(printed) == len(set(kinds)) and any(line.startswith("warning: the label is being ignored at epoch")
                                                   for line in printed), printed


def test_alarms_wait_for_the_learning_phase_and_advise_one_way(tiny_npz: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    # a huge beta makes every KL term too expensive: no latent unit stays active
    train(tiny_config(tiny_npz, tmp_path / "collapsed", epochs=16, beta=50.0, aggregate_components=0),
          progress=False)
    history = _metrics(tmp_path / "collapsed")
    # nothing during the first quarter of the planned epochs (and never before epoch 3): still learning
    assert [r["alarms"] for r in history[:3]] == [{}] * 3
    assert all("collapse" in r["alarms"] for r in history[3:])
    printed = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: ")]
    assert "warning: posterior collapse at epoch 4: no active latent units of 4; lower --beta or add " \
           "--warmup-epochs" in printed
    assert len(printed) == len({kind for r in history for kind in r["alarms"]})  # each kind once
    assert not any("larger --beta" in line for line in printed)  # one way for β


def test_epoch_lines_count_the_phase_in_the_time_left(tiny_npz: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Each epoch's console line says the most time left, the adversarial phase's included."""
    def epoch_lines() -> list[str]:
        return [line for line in capsys.readouterr().err.splitlines() if "val ELBO" in line]

    capsys.readouterr()
    train(tiny_config(tiny_npz, tmp_path / "phase", epochs=2, adversarial_epochs=1), progress=True)
    lines = epoch_lines()  # the last ELBO epoch still has the phase ahead
    assert [line.split()[1] for line in lines] == ["1/2", "2/2"] and all("left" in line for line in lines), lines
    train(tiny_config(tiny_npz, tmp_path / "none", epochs=2), progress=True)
    lines = epoch_lines()
    assert "left" in lines[0] and "left" not in lines[1], lines


def _npz(path: Path, images: np.ndarray, labels: np.ndarray, **extra: np.ndarray) -> Path:
    np.savez(path, images=images, labels=labels, **extra)
    return path


@pytest.mark.parametrize(("case", "message"), [
    ("few", "fewer than 10 training images: {'b': 4}"),
    ("skipped", r"class\(es\) \['1', '3'\] have no training images"),
    ("tiny", "images are 1x1 pixels; cvae-sdk needs at least 4x4"),
    ("large", "images are 8x130 pixels; cvae-sdk trains on at most 128x128 .* Resize the images"),
    ("doublings", "images are 8x12 pixels; --doublings 4 halves them 4 times and needs at least 16 pixels a side: "
                  "lower --doublings"),
])
def test_untrainable_data_is_one_line_naming_the_limit(tmp_path: Path, case: str, message: str) -> None:
    rng = np.random.default_rng(0)
    if case == "few":
        data = _npz(tmp_path / "d.npz", rng.integers(0, 255, (64, 8, 8), dtype=np.uint8),
                    np.array([0] * 60 + [1] * 4), class_names=np.array(["a", "b"]))
    elif case == "skipped":
        data = _npz(tmp_path / "d.npz", rng.integers(0, 255, (90, 8, 8), dtype=np.uint8), np.arange(90) % 3 * 2)
    elif case == "large":
        data = _npz(tmp_path / "d.npz", rng.integers(0, 255, (30, 8, 130), dtype=np.uint8), np.arange(30) % 3)
    elif case == "doublings":
        data = _npz(tmp_path / "d.npz", rng.integers(0, 255, (90, 8, 12), dtype=np.uint8), np.arange(90) % 3)
    else:
        data = _npz(tmp_path / "d.npz", rng.integers(0, 255, (90, 1, 1), dtype=np.uint8), np.arange(90) % 3)
    done = subprocess.run([sys.executable, "-m", "cvae_sdk", "train", "--data", str(data), "--out",
                           str(tmp_path / "run"), "--quiet", *(["--doublings", "4"] if case == "doublings" else [])],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert re.search(message, done.stderr), done.stderr
    assert not (tmp_path / "run").exists()  # a failed check writes nothing


@pytest.mark.parametrize(("shape", "classes"), [((1, 12, 12), 1), ((3, 64, 64), 2)])
def test_one_class_and_colour_64px_train_and_export(tmp_path: Path, shape: tuple[int, int, int],
                                                    classes: int) -> None:
    from conftest import make_images

    images, labels = make_images(60 * classes, shape, classes, 0)
    data = _npz(tmp_path / "d.npz", images, labels)
    # grey and colour images alike get the adversarial phase by default, and the latent size by channels
    train(tiny_config(data, tmp_path / "run", epochs=1, adversarial_epochs=None, latent_dim=None), progress=False)
    phase = load_checkpoint(tmp_path / "run" / "best.pt")["adversarial"]
    assert phase["planned_epochs"] == MAX_ADVERSARIAL_EPOCHS  # 54 or 108 images: the most epochs
    from cvae_sdk_training.export import export_generator

    result = export_generator(tmp_path / "run", tmp_path / "m.onnx", allow_low_fidelity=True)
    assert result.config.sample_shape == shape and result.config.num_classes == classes
    model_config = load_checkpoint(tmp_path / "run" / "best.pt")["model_config"]
    assert model_config["likelihood"] == ("bernoulli" if shape[0] == 1 else "gaussian")  # --likelihood auto
    assert model_config["latent_dim"] == result.config.latent_dim == (16 if shape[0] == 1 else 64)
    assert result.config.class_temperatures is not None and len(result.config.class_temperatures) == classes


def test_training_length_follows_the_data() -> None:
    """About SAMPLE_BUDGET examples seen, at least MIN_EPOCHS and at most MAX_EPOCHS; --epochs wins.
    Images beyond 32x32 colour scale the budget and MIN_EPOCHS down by their pixel values."""
    from cvae_sdk.backends import BUDGET_VALUES, MAX_EPOCHS, MIN_EPOCHS, SAMPLE_BUDGET, TrainConfig

    config, grey = TrainConfig(data="unused", out="unused"), 28 * 28
    assert config.planned_epochs(9_000, grey) == round(SAMPLE_BUDGET / 9_000)  # a 10,000-image set: 111 epochs
    assert config.planned_epochs(21_911, grey) == round(SAMPLE_BUDGET / 21_911)  # MNIST's train split: 46
    assert config.planned_epochs(60_000, grey) == MIN_EPOCHS == 40              # the full MNIST
    assert config.planned_epochs(2_700, grey) == MAX_EPOCHS                     # small data stops early instead
    assert config.planned_epochs(9_000, BUDGET_VALUES) == 111                   # 32x32 colour: the full budget
    # 64x64 colour: a quarter of the budget, 28 epochs, of which the phase takes 18 (phase_trade)
    assert round(SAMPLE_BUDGET / 4 / 9_000) == 28 and config.planned_epochs(9_000, 3 * 64 * 64) == 28 - 18
    assert config.planned_epochs(60_000, 3 * 64 * 64) == MIN_EPOCHS // 4        # its floor shrinks alike
    assert TrainConfig(data="unused", out="unused", epochs=3).planned_epochs(21_911, 3 * 64 * 64) == 3
    # bfloat16 steps cost 0.6 of float32 ones: 64x64 colour then gets 0.42 of the budget, 32x32 colour still all
    assert round(SAMPLE_BUDGET / (4 * 0.6) / 9_000) == 46 and config.planned_epochs(9_000, 3 * 64 * 64, "bf16") == 31
    assert config.planned_epochs(9_000, BUDGET_VALUES, "bf16") == 111
    # a set phase length keeps the whole ELBO plan
    phase_set = TrainConfig(data="unused", out="unused", adversarial_epochs=5)
    assert phase_set.planned_epochs(9_000, 3 * 64 * 64, "bf16") == 46


def test_patience_is_twenty_epochs_or_a_quarter_of_a_shorter_plan() -> None:
    from cvae_sdk.backends import PATIENCE, TrainConfig

    config = TrainConfig(data="unused", out="unused")
    assert config.patience is None and PATIENCE == 20
    assert config.planned_patience(111) == config.planned_patience(200) == config.planned_patience(80) == 20
    assert config.planned_patience(46) == 12 and config.planned_patience(28) == 7 and config.planned_patience(1) == 1
    assert TrainConfig(data="unused", out="unused", patience=0).planned_patience(46) == 0  # never stops early
    assert TrainConfig(data="unused", out="unused", patience=30).planned_patience(46) == 30
    with pytest.raises(ValueError, match="patience must be >= 0"):
        TrainConfig(data="unused", out="unused", patience=-1)


def test_precision_auto_takes_bf16_only_for_large_images_on_native_hardware_and_a_choice_wins() -> None:
    from cvae_sdk.backends import BUDGET_VALUES, TrainConfig

    auto = TrainConfig(data="unused", out="unused")
    assert auto.planned_precision(3 * 64 * 64, native_bf16=True) == "bf16"
    assert auto.planned_precision(3 * 64 * 64, native_bf16=False) == "fp32"
    assert auto.planned_precision(BUDGET_VALUES, native_bf16=True) == "fp32"  # where every quality row was trained
    assert TrainConfig(data="unused", out="unused", precision="fp32").planned_precision(3 * 64 * 64, True) == "fp32"
    assert TrainConfig(data="unused", out="unused", precision="bf16").planned_precision(28 * 28, False) == "bf16"
    assert TrainConfig.from_dict({"data": "d", "out": "o"}).precision == "fp32"  # runs saved before it trained so
    with pytest.raises(ValueError, match="precision must be one of"):
        TrainConfig(data="unused", out="unused", precision="fp16")


def test_bf16_steps_keep_float32_weights_track_float32_losses_and_resume_exactly(tiny_npz: Path,
                                                                                tmp_path: Path) -> None:
    """Mixed precision through both phases: float32 weights, losses near a float32 run's, exact --resume."""
    flat = {"aggregate_components": 0, "lr_schedule": "constant", "adversarial_epochs": 1}
    train(tiny_config(tiny_npz, tmp_path / "fp32", epochs=3, precision="fp32", **flat), progress=False)
    full = tmp_path / "full"
    train(tiny_config(tiny_npz, full, epochs=3, precision="bf16", **flat), progress=False)
    part = tmp_path / "part"
    train(tiny_config(tiny_npz, part, epochs=1, precision="bf16", **flat), progress=False)
    train(tiny_config(tiny_npz, part, epochs=3, precision="bf16", **flat), resume=True, progress=False)
    assert {r["precision"] for r in _metrics(full)} == {"bf16"}
    for a, b in zip(_metrics(full), _metrics(part), strict=True):
        assert a["train_loss"] == b["train_loss"] and a["val_elbo"] == b["val_elbo"]
    for a, b in zip(_metrics(full), _metrics(tmp_path / "fp32"), strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=0.02)
    best, again = load_checkpoint(full / "best.pt"), load_checkpoint(part / "best.pt")
    assert best["adversarial"]["precision"] == "bf16" and best["adversarial"]["epochs"] >= 0
    assert all(v.dtype == torch.float32 for v in best["model"].values() if v.is_floating_point())
    assert all(torch.equal(v, again["model"][k]) for k, v in best["model"].items())


def test_likelihood_auto_follows_the_channels_and_a_choice_wins() -> None:
    from cvae_sdk.backends import TrainConfig

    auto = TrainConfig(data="unused", out="unused")
    assert (auto.planned_likelihood(1), auto.planned_likelihood(3)) == ("bernoulli", "gaussian")
    assert TrainConfig(data="unused", out="unused", likelihood="bernoulli").planned_likelihood(3) == "bernoulli"
    with pytest.raises(ValueError, match="likelihood must be auto, bernoulli or gaussian"):
        TrainConfig(data="unused", out="unused", likelihood="poisson")


def test_latent_size_follows_the_channels_a_choice_wins_and_old_runs_keep_16() -> None:
    from cvae_sdk.backends import TrainConfig

    auto = TrainConfig(data="unused", out="unused")
    assert (auto.planned_latent_dim(1), auto.planned_latent_dim(3)) == (16, 64)
    assert TrainConfig(data="unused", out="unused", latent_dim=8).planned_latent_dim(3) == 8
    saved = {k: v for k, v in auto.to_dict().items() if k != "latent_dim"}  # a run saved before the field could be None
    assert TrainConfig.from_dict(saved).planned_latent_dim(3) == 16
    with pytest.raises(ValueError, match="latent_dim must be >= 1"):
        TrainConfig(data="unused", out="unused", latent_dim=0)


def test_more_prior_components_than_a_class_has_images_fail_before_training(tmp_path: Path,
                                                                              tiny_npz: Path) -> None:
    config = tiny_config(tiny_npz, tmp_path / "run", epochs=1, aggregate_components=10_000)
    with pytest.raises(ValueError, match="aggregate-components 10000 needs .* Pass at most"):
        train(config, progress=False)
    assert not (tmp_path / "run").exists()  # nothing was written


def test_shift_augmentation_moves_whole_pixels_and_keeps_the_rest() -> None:
    """Shifts copy pixels (no resampling blur), fill from the edge, and leave unshifted images bit-equal."""
    from cvae_sdk_training.augment import draw_shifts, max_shift, shift_images

    assert (max_shift(28, 28), max_shift(32, 32), max_shift(64, 64), max_shift(12, 12), max_shift(6, 6)) == (
        2, 2, 5, 1, 0)
    x = torch.rand(3, 3, 16, 16)
    moved = shift_images(x, torch.tensor([[1, -2], [0, 0], [-1, 1]]))
    assert torch.equal(moved[1], x[1])
    assert torch.equal(moved[0, :, 1:, :14], x[0, :, :15, 2:]) and torch.equal(moved[0, :, 0], moved[0, :, 1])
    assert torch.equal(moved[2, :, :15, 1:], x[2, :, 1:, :15])
    shifts = draw_shifts(4000, 28, 28, torch.Generator().manual_seed(0))
    assert shifts.abs().max() == 2 and 0.4 < (shifts != 0).any(1).float().mean() < 0.5  # half shifted, some by 0
    assert torch.equal(shifts, draw_shifts(4000, 28, 28, torch.Generator().manual_seed(0)))


def test_flip_augmentation_mirrors_half_the_images_left_right_and_keeps_the_rest() -> None:
    """Mirrors copy pixels exactly, only along the width, and only for the images drawn."""
    from cvae_sdk_training.augment import draw_flips, flip_images

    x = torch.rand(3, 3, 8, 8)
    flipped = flip_images(x, torch.tensor([True, False, True]))
    assert torch.equal(flipped[1], x[1])
    assert torch.equal(flipped[0], x[0, :, :, torch.arange(7, -1, -1)])
    assert torch.equal(flipped[2, :, :, 0], x[2, :, :, 7])
    flips = draw_flips(4000, torch.Generator().manual_seed(0))
    assert 0.45 < flips.float().mean() < 0.55
    assert torch.equal(flips, draw_flips(4000, torch.Generator().manual_seed(0)))


def test_a_ranks_augmented_slice_is_the_global_batchs() -> None:
    """A data-parallel rank draws for the global batch and keeps its rows: the ranks together see one batch."""
    from cvae_sdk_training.augment import augment_batch

    x = torch.rand(8, 1, 12, 12)
    for mode in ("shift", "flip"):
        whole = augment_batch(x, mode, torch.Generator().manual_seed(3))
        part = augment_batch(x[4:], mode, torch.Generator().manual_seed(3), 8, slice(4, 8))
        assert torch.equal(part, whole[4:]) and not torch.equal(whole, x)
    assert augment_batch(x, "none", torch.Generator().manual_seed(3)) is x


def test_runs_saved_before_augmentation_existed_resume_without_it() -> None:
    assert TrainConfig.from_dict({"data": "d", "out": "o"}).augment == "none"
    auto = TrainConfig(data="d", out="o")  # new runs: colour images mirrored, grey ones as they are
    assert (auto.planned_augment(1), auto.planned_augment(3)) == ("none", "flip")
    assert TrainConfig(data="d", out="o", augment="shift").planned_augment(3) == "shift"
    with pytest.raises(ValueError, match="augment must be one of"):
        TrainConfig(data="d", out="o", augment="rotate")


def test_a_folder_of_class_folders_trains_and_exports_from_the_cli(tmp_path: Path) -> None:
    """`--data` takes torchvision's ImageFolder layout: one sub-folder of PNGs per class."""
    from conftest import make_images
    from PIL import Image

    images, labels = make_images(60, (3, 12, 12), 2, 0)
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = tmp_path / "pictures" / ("left", "right")[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.transpose(1, 2, 0)).save(folder / f"{i}.png")
    cli = [sys.executable, "-m", "cvae_sdk"]
    done = subprocess.run([*cli, "train", "--data", str(tmp_path / "pictures"), "--out", str(tmp_path / "run"),
                           "--epochs", "1", "--latent-dim", "4", "--hidden", "32", "--conv-channels", "4", "--quiet"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    done = subprocess.run([*cli, "export", str(tmp_path / "run"), "--out", str(tmp_path / "m.onnx"),
                           "--allow-low-fidelity"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    from cvae_sdk import Generator

    gen = Generator.from_pretrained(tmp_path / "m.onnx")
    assert gen.config.class_names == ("left", "right") and gen.config.sample_shape == (3, 12, 12)


def test_tensorboard_logs_every_epoch_and_the_phase(tiny_npz: Path, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def events(run: Path) -> EventAccumulator:
        return EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0}).Reload()

    resumed = tmp_path / "resumed"
    train(tiny_config(tiny_npz, resumed, epochs=2, tensorboard=True), progress=False)
    train(tiny_config(tiny_npz, resumed, epochs=3, tensorboard=True), resume=True, progress=False)
    board = events(resumed)
    assert [e.step for e in board.Scalars("val/elbo")] == [1, 2, 3]  # the resumed run does not repeat epochs
    assert [e.value for e in board.Scalars("val/elbo")] == pytest.approx([r["val_elbo"] for r in _metrics(resumed)])
    assert [e.step for e in board.Images("samples")] == [1, 2, 3]
    assert board.Images("samples")[-1].encoded_image_string.startswith(b"\x89PNG")

    phased = tmp_path / "phased"
    train(tiny_config(tiny_npz, phased, epochs=1, tensorboard=True, adversarial_epochs=2), progress=False)
    history = load_checkpoint(phased / "best.pt")["adversarial"]["history"]
    logged = events(phased).Scalars("adversarial/diversity") if history else []
    assert [e.value for e in logged] == pytest.approx([r["diversity"] for r in history])


def test_tensorboard_without_the_package_fails_before_any_work(tiny_npz: Path, tmp_path: Path) -> None:
    code = ("import sys; sys.modules['tensorboard'] = None\n"
            "from cvae_sdk.cli import main; main()")
    done = subprocess.run([sys.executable, "-c", code, "train", "--data", str(tiny_npz), "--out", str(tmp_path / "r"),
                           "--tensorboard", "--quiet"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.startswith("error: --tensorboard needs the tensorboard package")
    assert not (tmp_path / "r").exists()
