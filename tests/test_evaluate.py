"""Quality metrics: the Fréchet distance and diversity maths, and a real evaluation end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image
from typer.testing import CliRunner

from cvae_sdk.artifact import read_metadata
from cvae_sdk.cli import app
from cvae_sdk.data import LabeledImages
from cvae_sdk.quality import frechet_distance, mean_pairwise_distance, reconstruction_pool


def test_frechet_distance_of_known_gaussians() -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((20000, 3))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    shifted = a + np.array([1.0, 2.0, 0.0])
    assert frechet_distance(a, shifted) == pytest.approx(5.0, rel=1e-6)
    scaled = a * 2.0  # FD(N(0,I), N(0,4I)) = tr(I + 4I - 2*2I) = 3
    assert frechet_distance(a, scaled) == pytest.approx(3.0, rel=2e-2)


def test_mean_pairwise_distance() -> None:
    points = np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0]])
    assert mean_pairwise_distance(points, np.random.default_rng(0)) == pytest.approx(10.0 / 3.0)


def test_reconstruction_pool_takes_up_to_n_seeded_images_per_class() -> None:
    train = LabeledImages(np.zeros((10, 1, 2, 2), np.float32), np.array([0, 1, 1, 1, 2, 2, 0, 1, 2, 2]))
    pool = reconstruction_pool(train, 2, 3, seed=0)
    assert np.bincount(train.labels[pool], minlength=3).tolist() == [2, 2, 2] and len(set(pool)) == 6
    assert np.array_equal(pool, reconstruction_pool(train, 2, 3, seed=0))
    assert np.bincount(train.labels[reconstruction_pool(train, 5, 3, seed=1)]).tolist() == [2, 4, 4]


def test_evaluate_artifact_report_and_sheet(tiny_model: Path, tiny_npz: Path, tiny_classifier: Path,
                                            tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    result = CliRunner().invoke(app, ["evaluate", str(tiny_model), "--data", str(tiny_npz), "--classifier",
                                      str(tiny_classifier), "--samples-per-label", "50", "--json",
                                      str(report_path), "--quiet"])
    assert result.exit_code == 0, result.output
    report = json.loads(report_path.read_text())
    assert 0.0 <= report["label_fidelity"] <= 1.0
    assert np.array(report["confusion_matrix"]).sum() == 150
    assert len(report["per_class"]) == 3 and report["frechet_floor"] > 0
    assert report["frechet_ratio"] == pytest.approx(report["frechet_distance"] / report["frechet_floor"])
    assert "reconstruction" not in report  # an artifact holds no encoder: only a run reconstructs
    assert (tmp_path / "report.png").read_bytes()[:4] == b"\x89PNG"
    with Image.open(tmp_path / "report.png") as sheet:  # titled "real" and "generated" above the cells
        pixels = np.asarray(sheet)
    cell = 12 + 2
    title_rows = pixels.shape[0] - (3 * cell + 2)
    assert title_rows > 0 and pixels[:title_rows].max() == 255
    title_cols = np.flatnonzero(pixels[:title_rows].max(axis=0) > 0)
    middle = (pixels.shape[1] + (pixels.shape[1] - 16 * cell - 2)) // 2   # where the generated half starts
    assert title_cols.min() < middle < title_cols.max()                   # one title over each half


def test_evaluate_run_adds_likelihood(tiny_run: Path, tiny_model: Path, tiny_npz: Path, tiny_classifier: Path,
                                      tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["evaluate", str(tiny_run), "--data", str(tiny_npz), "--classifier",
                                      str(tiny_classifier), "--samples-per-label", "20", "--k", "50",
                                      "--likelihood-images", "30", "--quiet", "--json", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0].split() == ["class", "fidelity", "Frechet", "floor", "diversity"]
    assert [line.split()[0] for line in lines[1:5]] == ["top", "middle", "bottom", "all"]
    assert set(json.loads(lines[-1])) >= {"label_fidelity", "frechet_ratio", "diversity_ratio", "json",
                                          "reconstruction_frechet_ratio", "reconstruction_diversity_ratio"}
    assert any(line.startswith("reconstructions of 60 training images (the decoder alone)") for line in lines)
    # the likelihood is printed, not only written to --json
    assert any(line.startswith("training prior: test ELBO") and "-log p(x|y)" in line for line in lines)
    assert "nll_training_prior" in json.loads(lines[-1])
    report = json.loads((tmp_path / "r.json").read_text())
    recon = report["reconstruction"]  # 20 training images per class, scored like the samples
    assert recon["images"] == 60 and len(recon["per_class"]) == 3
    assert recon["frechet_floor"] == pytest.approx(report["frechet_floor"])  # the same real-vs-real floor
    assert 0.0 <= recon["label_fidelity"] <= 1.0 and recon["diversity_ratio"] > 0
    lik = report["likelihood"]
    for prior in ("training_prior", "artifact_prior"):
        # the importance-sampled bound is tighter than the ELBO: -log p(x|y) <= -ELBO
        assert lik[prior]["nll"] <= -lik[prior]["elbo"] + 1e-6
        assert lik[prior]["k"] == 50 and lik[prior]["images"] == 30
    # the run is sampled as `cvae-sdk export` writes it: at the temperatures its calibration chose
    exported = read_metadata(onnx.load(str(tiny_model)), str(tiny_model))
    assert exported.class_temperatures is not None
    assert report["temperature"] == dict(zip(exported.class_names, exported.class_temperatures, strict=True))


def test_evaluate_finds_the_runs_classifier_with_no_flag(tiny_run: Path, tiny_model: Path, tiny_npz: Path,
                                                        tmp_path: Path) -> None:
    """A run keeps its classifier beside its checkpoints; an artifact names the run it came from."""
    for source in (tiny_model, tiny_run):
        report_path = tmp_path / f"{source.stem}.json"
        result = CliRunner().invoke(app, ["evaluate", str(source), "--data", str(tiny_npz), "--samples-per-label",
                                          "20", "--no-likelihood", "--quiet", "--json", str(report_path)])
        assert result.exit_code == 0, result.output
        assert json.loads(report_path.read_text())["classifier"] == str(tiny_run / "classifier.onnx")


def test_evaluate_without_matching_classifier_is_explained(tiny_run: Path, tiny_npz: Path, tmp_path: Path) -> None:
    import torch

    state = torch.load(tiny_run / "best.pt", map_location="cpu", weights_only=True)
    state["train_config"]["out"] = str(tmp_path)  # a run folder that keeps no classifier
    torch.save(state, tmp_path / "best.pt")
    result = CliRunner().invoke(app, ["evaluate", str(tmp_path / "best.pt"), "--data", str(tiny_npz)])
    assert result.exit_code == 2 and "cvae-sdk classifier" in result.output


def _one_line_error(args: list[str]) -> str:
    result = CliRunner().invoke(app, ["evaluate", *args, "--samples-per-label", "10", "--quiet"])
    assert result.exit_code == 2 and result.exception is not None and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    return result.output


def test_evaluate_refuses_classifier_model_and_data_that_do_not_belong_together(
        tiny_model: Path, tiny_npz: Path, tiny_classifier: Path, tmp_path: Path) -> None:
    from conftest import TINY_CLASSES, TINY_SHAPE, make_images
    from cvae_sdk_training.classifier import train_classifier

    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a protobuf at all")
    assert "is not a readable ONNX classifier" in _one_line_error(
        [str(tiny_model), "--data", str(tiny_npz), "--classifier", str(junk)])
    images, labels = make_images(90, (1, 16, 16), TINY_CLASSES, 2)
    larger = tmp_path / "larger.npz"
    np.savez(larger, images=images, labels=labels, test_images=images, test_labels=labels)
    assert "the data's images are 1x16x16 but the model draws 1x12x12" in _one_line_error(
        [str(tiny_model), "--data", str(larger), "--classifier", str(tiny_classifier)])
    images, labels = make_images(90, TINY_SHAPE, TINY_CLASSES, 2)
    shuffled = tmp_path / "shuffled.npz"  # the same classes, each image labelled as the next class
    np.savez(shuffled, images=images, labels=(labels + 1) % TINY_CLASSES, test_images=images,
             test_labels=(labels + 1) % TINY_CLASSES, class_names=np.array(["top", "middle", "bottom"]))
    assert "recognises only 0.0% of the real test images" in _one_line_error(
        [str(tiny_model), "--data", str(shuffled), "--classifier", str(tiny_classifier)])
    renamed = tmp_path / "renamed.npz"
    np.savez(renamed, images=images, labels=labels, test_images=images, test_labels=labels,
             class_names=np.array(["a", "b", "c"]))
    other = tmp_path / "other.onnx"
    train_classifier(str(renamed), other, epochs=1, progress=False)
    assert "knows classes ['a', 'b', 'c'] but the model draws ['top', 'middle', 'bottom']" in _one_line_error(
        [str(tiny_model), "--data", str(tiny_npz), "--classifier", str(other)])


def test_classifier_training_is_seeded_and_leaves_the_global_rng_alone(tiny_npz: Path) -> None:
    """Dropout masks come from the seed, not from torch's global RNG (which is left as it was): the same
    seed gives the same classifier, so export calibrates the same temperatures."""
    import torch
    from cvae_sdk_training.classifier import ClassifierConfig, fit_classifier

    from cvae_sdk.data import load_dataset

    train = load_dataset(tiny_npz).train
    cfg = ClassifierConfig(train.image_shape, 3)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = fit_classifier(cfg, train, epochs=2, seed=0, progress=False)
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(456)
    second = fit_classifier(cfg, train, epochs=2, seed=0, progress=False)
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_likelihood_of_a_gaussian_run_says_which_and_is_a_bound(tiny_npz: Path, tmp_path: Path) -> None:
    """A Gaussian run's report names its likelihood (a density, not Bernoulli nats) and is evaluated at the
    running variance: the importance-sampled bound stays below the ELBO's."""
    from conftest import tiny_config
    from cvae_sdk_training.evaluate_torch import likelihood_report
    from cvae_sdk_training.trainer import train

    from cvae_sdk.data import load_dataset

    train(tiny_config(tiny_npz, tmp_path / "run", likelihood="gaussian", epochs=2), progress=False)
    test = load_dataset(tiny_npz).test
    assert test is not None
    report = likelihood_report(tmp_path / "run", test, k=20, limit=20, binarized=False, seed=0, progress=False)
    assert "Gaussian likelihood" in report["data"]
    assert report["training_prior"]["nll"] <= -report["training_prior"]["elbo"] + 1e-6


def test_a_prior_of_codes_scores_as_its_full_covariance_mixture(monkeypatch: pytest.MonkeyPatch) -> None:
    """log p(z|y) of a diagonal mixture (one Gaussian per training image) by matrix products, chunked: the
    same as torch's MultivariateNormal mixture of the same Gaussians."""
    import torch
    from cvae_sdk_training import likelihood
    from cvae_sdk_training.likelihood import prior_log_prob

    gen = torch.Generator().manual_seed(0)
    weights = torch.rand((3, 7), generator=gen, dtype=torch.float64)
    weights[0, 5:] = 0.0                                                     # padding codes of a smaller class
    weights /= weights.sum(1, keepdim=True)
    means = torch.randn((3, 7, 4), generator=gen, dtype=torch.float64)
    scales = torch.rand((3, 7, 4), generator=gen, dtype=torch.float64) + 0.1
    z, y = torch.randn((5, 6, 4), generator=gen), torch.tensor([0, 1, 2, 0, 1, 2])  # (S, B, D), (B,)
    codes = {"weights": weights, "means": means, "scale_diag": scales}
    full = {"weights": weights, "means": means, "scale_tril": torch.diag_embed(scales)}
    want = prior_log_prob(None, full, z, y)  # type: ignore[arg-type]
    torch.testing.assert_close(prior_log_prob(None, codes, z, y), want)  # type: ignore[arg-type]
    monkeypatch.setattr(likelihood, "MIXTURE_TERMS", 5 * 7)  # chunks of one image of B
    torch.testing.assert_close(prior_log_prob(None, codes, z, y), want)  # type: ignore[arg-type]
