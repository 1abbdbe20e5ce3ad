"""The adversarial phase after ELBO training: what it changes, what it keeps, and that resume stays exact."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import load_benchmark, tiny_config
from cvae_sdk_training.adversarial import PHASE_FILE, AdversarialPhase, PatchDiscriminator, diversity, mode_seeking
from cvae_sdk_training.checkpoint import load_checkpoint
from cvae_sdk_training.trainer import train

from cvae_sdk.backends import ADVERSARIAL_BUDGET, MAX_ADVERSARIAL_EPOCHS, TrainConfig

PHASE = {"epochs": 2, "adversarial_epochs": 2, "aggregate_components": 0}


def _split(weights: dict[str, torch.Tensor], part: str) -> dict[str, torch.Tensor]:
    return {k: v for k, v in weights.items() if k.startswith(part)}


@pytest.fixture(scope="module")
def phased_run(tiny_npz: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("phase") / "run"
    train(tiny_config(tiny_npz, out, **PHASE), progress=False)
    return out


def test_the_phase_changes_only_the_decoder_and_records_itself(phased_run: Path) -> None:
    best, last = load_checkpoint(phased_run / "best.pt"), load_checkpoint(phased_run / "last.pt")
    phase = best["adversarial"]
    assert phase["planned_epochs"] == 2 and phase["epochs"] + (phase["stopped"] is not None) >= 1
    assert phase["mode_seeking"] == 0.0  # off in the defaults
    assert [r["adversarial_epoch"] for r in phase["history"]] == list(range(1, phase["epochs"] + 1))
    assert {"label_fidelity", "diversity"} <= set(phase["reference"])
    assert phase["loss"] == "non-saturating"  # what benchmarks/adversarial_phase.py records per row
    assert not (phased_run / PHASE_FILE).exists()  # the phase's own checkpoint is gone once best.pt holds it
    # last.pt is the ELBO run's (what --resume --epochs would extend); the ELBO best here is its last epoch
    assert best["epoch"] == last["epoch"] == 2
    for part in ("encoder.", "prior."):
        assert all(torch.equal(v, last["model"][k]) for k, v in _split(best["model"], part).items())
    if phase["epochs"] > 0:
        decoder = _split(best["model"], "decoder.")
        assert any(not torch.equal(v, last["model"][k]) for k, v in decoder.items())


def test_the_phase_keeps_the_exported_graph(phased_run: Path, tiny_run: Path, tmp_path: Path) -> None:
    import onnx
    from cvae_sdk_training.export import export_generator

    shapes = []
    for run in (phased_run, tiny_run):
        out = tmp_path / f"{run.name}.onnx"
        export_generator(run, out, allow_low_fidelity=True)
        graph = onnx.load(str(out)).graph
        shapes.append(sorted((t.name, tuple(t.dims)) for t in graph.initializer))
    assert shapes[0] == shapes[1]


def test_ctrl_c_in_the_phase_saves_it_and_resume_is_exact(tiny_npz: Path, phased_run: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "run"
    step, calls = AdversarialPhase.step, []

    def step_then_sigint(self: AdversarialPhase, idx: torch.Tensor) -> tuple[float, float, float, float]:
        calls.append(1)
        if len(calls) == 7:  # Ctrl-C in the middle of the second phase epoch (270 images: 5 steps an epoch)
            os.kill(os.getpid(), signal.SIGINT)
        return step(self, idx)

    monkeypatch.setattr(AdversarialPhase, "step", step_then_sigint)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(tiny_npz, run, **PHASE), progress=False)
    saved = load_checkpoint(run / PHASE_FILE)
    assert saved["epoch"] == 1 and saved["partial"]["step"] == 2
    assert "adversarial" not in load_checkpoint(run / "best.pt")
    monkeypatch.setattr(AdversarialPhase, "step", step)
    train(tiny_config(tiny_npz, run, **PHASE), resume=True, progress=False)
    got, want = load_checkpoint(run / "best.pt"), load_checkpoint(phased_run / "best.pt")
    assert all(torch.equal(got["model"][k], v) for k, v in want["model"].items())
    assert [r["recon"] for r in got["adversarial"]["history"]] == [r["recon"] for r in want["adversarial"]["history"]]
    # a finished phase is not run again by a later --resume
    train(tiny_config(tiny_npz, run, **PHASE), resume=True, progress=False)
    again = load_checkpoint(run / "best.pt")
    assert all(torch.equal(again["model"][k], v) for k, v in got["model"].items())


def test_the_phase_augments_its_images_only_when_asked(tiny_npz: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """With AUGMENT (off in the defaults) a mirrored run's phase reconstructs and judges mirrored images too."""
    import cvae_sdk_training.adversarial as adversarial

    seen: list[tuple[torch.Tensor, torch.Tensor, str]] = []

    def spy(x: torch.Tensor, mode: str, generator: torch.Generator, *args: object) -> torch.Tensor:
        out = adversarial_augment(x, mode, generator, *args)
        seen.append((x, out, mode))
        return out

    adversarial_augment = adversarial.augment_batch
    monkeypatch.setattr(adversarial, "augment_batch", spy)
    for on, augment in ((True, "flip"), (False, "none")):  # off: a mirrored run's phase sees images as they are
        monkeypatch.setattr(adversarial, "AUGMENT", on)
        seen.clear()
        run = tmp_path / augment
        train(tiny_config(tiny_npz, run, epochs=1, adversarial_epochs=1, augment="flip"), progress=False)
        assert load_checkpoint(run / "best.pt")["adversarial"]["augment"] == augment
        assert seen and {mode for *_, mode in seen} == {augment}
        rows = [(a, b) for x, out, _ in seen for a, b in zip(x, out, strict=True)]
        mirrored = sum(not torch.equal(a, b) and torch.equal(b, a.flip(-1)) for a, b in rows)
        unchanged = sum(torch.equal(a, b) for a, b in rows)
        if augment == "flip":  # about half of the phase's images, each mirrored exactly
            assert 0.3 * len(rows) < mirrored and mirrored + unchanged == len(rows)
        else:
            assert unchanged == len(rows)


def test_a_diverging_phase_keeps_the_decoder_before_it_and_says_so(tiny_npz: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "cvae_sdk", "train", "--data", str(tiny_npz), "--out", str(run),
                           "--latent-dim", "4", "--hidden", "32", "--conv-channels", "4", "--epochs", "2",
                           "--aggregate-components", "0", "--adversarial-epochs", "2",
                           "--adversarial-weight", "1e300", "--quiet"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if "adversarial" in line]
    assert len(lines) == 1 and lines[0].startswith("warning: the adversarial phase diverged at its epoch 1")
    assert "--adversarial-weight" in lines[0] and "Traceback" not in done.stderr
    best, last = load_checkpoint(run / "best.pt"), load_checkpoint(run / "last.pt")
    assert best["adversarial"]["epochs"] == 0 and "diverged" in best["adversarial"]["stopped"]
    assert all(torch.equal(v, last["model"][k]) for k, v in best["model"].items())


def test_dropped_modes_or_lost_labels_end_the_phase() -> None:
    phase = AdversarialPhase.__new__(AdversarialPhase)
    phase.epoch, phase.reference = 0, {"label_fidelity": 0.95, "diversity": 10.0}
    healthy = {"recon": 1.0, "disc": 1.0, "label_fidelity": 0.93, "diversity": 9.5}
    assert phase.unhealthy(healthy) is None
    assert "lost sample diversity" in str(phase.unhealthy({**healthy, "diversity": 8.9}))
    assert "lost label fidelity" in str(phase.unhealthy({**healthy, "label_fidelity": 0.9}))
    assert "diverged" in str(phase.unhealthy({**healthy, "recon": float("nan")}))


def test_the_discriminator_adds_its_label_maps_as_if_the_planes_were_convolved() -> None:
    """Its one convolution of a plane of ones per call equals the first layer over B x K label planes."""
    torch.manual_seed(0)
    for channels, side in ((1, 28), (3, 32), (3, 64)):
        disc = PatchDiscriminator(channels, 7, 16)
        x, y = torch.rand(5, channels, side, side, requires_grad=True), torch.tensor([0, 6, 3, 3, 1])
        planes = torch.nn.functional.one_hot(y, 7).float()[:, :, None, None].expand(-1, -1, side, side)
        by_planes = disc.net(torch.cat([x, planes], 1))                              # (5, 1, side/4, side/4)
        assert torch.allclose(disc(x, y), by_planes, atol=1e-6)
        first = disc.net[0].weight
        grad = torch.autograd.grad(disc(x, y).square().sum(), [x, first])
        grad_planes = torch.autograd.grad(by_planes.square().sum(), [x, first])
        assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(grad, grad_planes, strict=True))


def test_diversity_is_the_mean_pairwise_distance_within_labels() -> None:
    images = np.zeros((4, 1, 1, 2))
    images[1, 0, 0, 0] = 3.0   # label 0: distance 3
    images[3, 0, 0, 1] = 1.0   # label 1: distance 1
    assert diversity(images, np.array([0, 0, 1, 1])) == pytest.approx(2.0)


def test_phase_length_follows_the_data() -> None:
    config, grey = TrainConfig(data="d", out="o"), 28 * 28
    assert config.planned_adversarial_epochs(ADVERSARIAL_BUDGET // 3, grey) == 3
    assert config.planned_adversarial_epochs(10 * ADVERSARIAL_BUDGET, grey) == 1
    assert config.planned_adversarial_epochs(100, grey) == MAX_ADVERSARIAL_EPOCHS
    assert config.planned_adversarial_epochs(9_000, 3 * 32 * 32) == MAX_ADVERSARIAL_EPOCHS  # 11, capped
    # 64x64 colour images cost four times 32x32 colour ones: their budgets count a quarter of the images
    # (bfloat16 steps: 0.42), and the ELBO plan pays for the phase epochs lost, down to its floor
    explicit = TrainConfig(data="d", out="o", epochs=46)
    assert explicit.planned_adversarial_epochs(9_000, 3 * 64 * 64) == round(ADVERSARIAL_BUDGET / 4 / 9_000) == 3
    bf16 = explicit.planned_adversarial_epochs(9_000, 3 * 64 * 64, "bf16")  # a bfloat16 step costs 0.6 of one
    assert bf16 == round(ADVERSARIAL_BUDGET / (4 * 0.6) / 9_000) == 5
    assert config.phase_trade(9_000, 3 * 64 * 64, "bf16") == 5  # 46 ELBO epochs, 15 of them traded
    assert config.planned_adversarial_epochs(9_000, 3 * 64 * 64, "bf16") == MAX_ADVERSARIAL_EPOCHS
    assert config.phase_trade(9_000, 3 * 64 * 64) == 6  # float32: 28 ELBO epochs, 18 traded to keep the floor of 10
    assert config.planned_adversarial_epochs(9_000, 3 * 64 * 64) == 9
    assert config.phase_trade(60_000, 3 * 64 * 64) == 0 and config.phase_trade(9_000, 3 * 32 * 32) == 0
    # planned ELBO epochs that early stopping left unrun buy phase epochs (PHASE_EPOCH_COST each), within the cap
    assert config.planned_adversarial_epochs(9_000, 3 * 64 * 64, unrun_epochs=3) == 10
    assert config.planned_adversarial_epochs(9_000, 3 * 64 * 64, unrun_epochs=40) == MAX_ADVERSARIAL_EPOCHS
    assert config.planned_adversarial_epochs(60_000, 3 * 64 * 64, unrun_epochs=6) == 2  # 0.42 + 6 / 3: at its floor
    # not when the user set the ELBO epochs: stopping early then leaves no planned time
    assert explicit.planned_adversarial_epochs(9_000, 3 * 64 * 64, "bf16", unrun_epochs=16) == 5
    assert TrainConfig(data="d", out="o", adversarial_epochs=2).planned_adversarial_epochs(100, grey) == 2
    assert TrainConfig(data="d", out="o", adversarial_epochs=0).planned_adversarial_epochs(100, grey) == 0
    # runs saved before the phase existed resume without it
    saved = {k: v for k, v in config.to_dict().items() if k != "adversarial_epochs"}
    assert TrainConfig.from_dict(saved).adversarial_epochs == 0
    with pytest.raises(ValueError, match="adversarial_weight"):
        TrainConfig(data="d", out="o", adversarial_weight=float("inf"))


def test_prior_samples_as_fakes_draw_from_the_fitted_mixture(tiny_npz: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import cvae_sdk_training.adversarial as adversarial

    monkeypatch.setattr(adversarial, "PRIOR_FAKES", True)
    run = tmp_path / "run"
    train(tiny_config(tiny_npz, run, epochs=1, adversarial_epochs=1), progress=False)
    best = load_checkpoint(run / "best.pt")
    assert "aggregate_prior" in best and best["adversarial"]["fakes"] == ["reconstructions", "prior samples"]
    # the draws follow the label's mixture: their mean is its weighted mean of component means
    phase = AdversarialPhase(*_phase_inputs(run, tiny_npz))
    n = 4000
    y = torch.arange(3).repeat_interleave(n)
    z = phase.prior_sample(y, phase.draw_prior_noise(y.shape[0])).view(3, n, -1)          # (K, n, D)
    assert phase.prior.source == "aggregate"
    prior = phase.prior
    expected = torch.from_numpy((prior.weights[:, :, None] * prior.means).sum(1)).float()  # (K, D)
    error = (z.mean(1) - expected).abs() / (z.std(1) / n ** 0.5)                          # in standard errors
    assert bool((error < 5).all()), error


def test_mode_seeking_pushes_a_labels_images_apart() -> None:
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(6, 4, generator=gen)                                                    # (B, D)
    y = torch.tensor([0, 0, 0, 1, 1, 2])
    same = torch.full((6, 1, 4, 4), 0.5, requires_grad=True)                                 # (B, C, H, W)
    spread = torch.rand(6, 1, 4, 4, generator=gen)
    assert mode_seeking(same, z, y).item() > 1e4 > mode_seeking(spread, z, y).item() > 0
    assert mode_seeking(spread, z, torch.arange(6)).item() == 0.0  # no two rows share a label
    images = spread.clone().requires_grad_(True)
    before = torch.cdist(images[:3].flatten(1), images[:3].flatten(1), p=1).sum().item()
    mode_seeking(images, z, y).backward()
    with torch.no_grad():
        stepped = images - 0.01 * images.grad.sign()
    assert torch.cdist(stepped[:3].flatten(1), stepped[:3].flatten(1), p=1).sum().item() > before
    assert images.grad[5].abs().sum().item() == 0.0  # the lone label 2 is in no pair


def test_mode_seeking_runs_in_the_phase_and_is_recorded(tiny_npz: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import cvae_sdk_training.adversarial as adversarial

    monkeypatch.setattr(adversarial, "MODE_SEEKING", 0.1)
    run = tmp_path / "run"
    train(tiny_config(tiny_npz, run, epochs=1, adversarial_epochs=1, aggregate_components=0), progress=False)
    phase = load_checkpoint(run / "best.pt")["adversarial"]
    assert phase["mode_seeking"] == 0.1 and phase["epochs"] + (phase["stopped"] is not None) == 1


def _phase_inputs(run: Path, data: Path) -> tuple[object, ...]:
    from cvae_sdk_training.model import CVAE, ModelConfig

    from cvae_sdk.data import load_dataset

    best = load_checkpoint(run / "best.pt")
    model = CVAE(ModelConfig.from_dict(best["model_config"]))
    train_split = load_dataset(str(data)).train
    x, y = torch.from_numpy(train_split.images), torch.from_numpy(train_split.labels)
    return model, best, x, y, 1, 1.0, 0, run, lambda images, labels: {}, lambda: False


def test_the_health_check_draws_from_the_prior_the_artifact_ships(tiny_npz: Path, tmp_path: Path) -> None:
    """The phase judges the samples users will get: decoded from the prior of codes, not the training prior."""
    from cvae_sdk_training.adversarial import CHECK_PER_CLASS

    from cvae_sdk.latents import transform

    run = tmp_path / "run"
    train(tiny_config(tiny_npz, run, epochs=1, adversarial_epochs=0, aggregate_components=None), progress=False)
    seen: list[tuple[np.ndarray, np.ndarray]] = []
    model, best, x, y, *rest = _phase_inputs(run, tiny_npz)
    epochs, weight, seed, run_dir, _, interrupted = rest
    phase = AdversarialPhase(model, best, x, y, epochs, weight, seed, run_dir,
                             lambda images, labels: seen.append((images, labels)) or {}, interrupted)
    phase.check_health()
    phase.check_health()
    (images, labels), (again, _) = seen
    assert phase.prior.source == "aggregate" and phase.prior.diagonal       # the prior of codes
    assert np.array_equal(np.bincount(labels), [CHECK_PER_CLASS] * 3)
    assert np.array_equal(images, again)                                    # the same noise every check
    u, eps = phase.check_noise
    shipped = transform(phase.prior, labels, eps, u, 1.0)                   # (K * n, D)
    with torch.no_grad():
        expected = model.decode(torch.from_numpy(shipped), torch.from_numpy(labels)).numpy()
    np.testing.assert_allclose(images, expected, atol=1e-6)


def test_the_phase_ships_its_weights_moving_average_when_asked(tiny_npz: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """With EMA_DECAY (off in the defaults) the kept decoder is the moving average of the steps' weights, and an
    interrupted phase resumes to the same average."""
    import cvae_sdk_training.adversarial as adversarial
    from cvae_sdk_training.model import CVAE, ModelConfig

    monkeypatch.setattr(adversarial, "EMA_DECAY", 0.5)
    step, weights = AdversarialPhase.step, []

    def recorded(self: AdversarialPhase, idx: torch.Tensor) -> tuple[float, float, float, float]:
        if not weights:
            weights.append([p.detach().clone() for p in self.decoder])  # before the phase's first step
        losses = step(self, idx)
        weights.append([p.detach().clone() for p in self.decoder])
        return losses

    monkeypatch.setattr(AdversarialPhase, "step", recorded)
    whole = tmp_path / "whole"
    train(tiny_config(tiny_npz, whole, **PHASE), progress=False)
    best = load_checkpoint(whole / "best.pt")
    phase = best["adversarial"]
    assert phase["ema_decay"] == 0.5 and phase["stopped"] is None and phase["epochs"] == 2
    average = weights[0]
    for step_weights in weights[1:]:
        average = [0.5 * a + 0.5 * w for a, w in zip(average, step_weights, strict=True)]
    model = CVAE(ModelConfig.from_dict(best["model_config"]))
    model.load_state_dict(best["model"])
    shipped = list(model.decoder.parameters())
    assert all(torch.allclose(s, a, atol=1e-6) for s, a in zip(shipped, average, strict=True))
    assert not all(torch.equal(s, w) for s, w in zip(shipped, weights[-1], strict=True))

    calls: list[int] = []

    def step_then_sigint(self: AdversarialPhase, idx: torch.Tensor) -> tuple[float, float, float, float]:
        calls.append(1)
        if len(calls) == 7:  # Ctrl-C in the middle of the second phase epoch
            os.kill(os.getpid(), signal.SIGINT)
        return step(self, idx)

    monkeypatch.setattr(AdversarialPhase, "step", step_then_sigint)
    resumed = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(tiny_npz, resumed, **PHASE), progress=False)
    monkeypatch.setattr(AdversarialPhase, "step", step)
    train(tiny_config(tiny_npz, resumed, **PHASE), resume=True, progress=False)
    got = load_checkpoint(resumed / "best.pt")
    assert all(torch.equal(got["model"][k], v) for k, v in best["model"].items())


def test_the_phase_benchmark_sets_numeric_and_true_false_constants() -> None:
    """``benchmarks/adversarial_phase.py --constant NAME=VALUE``: typed as the constant is, refused with the reason."""
    import argparse

    module = load_benchmark("adversarial_phase")
    assert module.constant("MODE_SEEKING=0.1") == ("MODE_SEEKING", 0.1)
    assert module.constant("BATCH_SIZE=128") == ("BATCH_SIZE", 128)
    assert module.constant("PRIOR_FAKES=1") == ("PRIOR_FAKES", True)
    assert module.constant("AUGMENT=false") == ("AUGMENT", False)
    for text, reason in (("PRIOR_FAKES=2", "0, 1, true or false"), ("GAN_LOSS=hinge", "not a numeric"),
                         ("NO_SUCH=1", "not a numeric"), ("LR=fast", "must be a number")):
        with pytest.raises(argparse.ArgumentTypeError, match=reason):
            module.constant(text)
