"""The command line end to end, with real files, in subprocesses where exit codes matter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cvae_sdk import Generator, make_image_grid
from cvae_sdk.cli import app

runner = CliRunner()


def cvae(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cvae_sdk", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=600)


def test_train_export_sample_info_end_to_end(tiny_npz: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    done = cvae("train", "--data", str(tiny_npz), "--out", str(run), "--epochs", "2", "--latent-dim", "3",
                "--hidden", "16", "--batch-size", "64", "--quiet")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["epochs"] == 2
    model = tmp_path / "m.onnx"
    done = cvae("export", str(run), "--out", str(model), "--allow-low-fidelity")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["bytes"] == model.stat().st_size
    png = tmp_path / "grid.png"
    done = cvae("sample", "--model", str(model), "--label", "top", "--label", "2", "--n", "5",
                "--out", str(png), "--columns", "3", "--scale", "3")
    assert done.returncode == 0, done.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as grid:  # two labels of 5 in rows of 3: four rows of 3 cells, each 3x larger
        layout = make_image_grid(np.zeros((12, 1, 12, 12), np.uint8), 3, row_labels=["top", "", "bottom", ""],
                                 scale=3)
        assert (grid.height, grid.width) == layout.shape[:2] and grid.height == 4 * (12 * 3 + 2) + 2
    done = cvae("info", str(model), "--json")
    info = json.loads(done.stdout)
    assert info["class_names"] == ["top", "middle", "bottom"] and "CPUExecutionProvider" in info["available_providers"]


def test_sample_npy_streams_and_matches_the_api(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "many.npy"
    result = runner.invoke(app, ["sample", "--model", str(tiny_model), "--label", "0", "--label", "1",
                                 "--n", "5000", "--seed", "3", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    array = np.load(out, mmap_mode="r")
    labels = np.load(tmp_path / "many.labels.npy")
    want = Generator.from_pretrained(tiny_model).generate([0, 1], 5000, rng=3)
    assert array.shape == (10000, 1, 12, 12) and np.array_equal(np.asarray(array), want.samples)
    assert np.array_equal(labels, want.labels)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["many.labels.npy", "many.npy"]


def test_shards_concatenate_to_the_whole(tiny_model: Path, tmp_path: Path) -> None:
    args = ["sample", "--model", str(tiny_model), "--label", "0", "--label", "2", "--n", "1001", "--seed", "7",
            "--quiet"]
    assert runner.invoke(app, [*args, "--out", str(tmp_path / "all.npy")]).exit_code == 0
    for k in range(3):
        assert runner.invoke(app, [*args, "--shard", f"{k}/3", "--out", str(tmp_path / f"part-{k}.npy")]).exit_code == 0
    parts = np.concatenate([np.load(tmp_path / f"part-{k}.npy") for k in range(3)])
    assert np.array_equal(parts, np.load(tmp_path / "all.npy"))


def test_sample_npz_holds_images_labels_latents_and_reads_as_a_dataset(tiny_model: Path, tmp_path: Path) -> None:
    from cvae_sdk.data import load_dataset

    out = tmp_path / "s.npz"
    result = runner.invoke(app, ["sample", "--model", str(tiny_model), "--label", "1", "--label", "0", "--n", "4",
                                 "--out", str(out), "--dtype", "uint8"])
    assert result.exit_code == 0, result.output
    with np.load(out, allow_pickle=False) as archive:
        assert archive["images"].dtype == np.uint8 and archive["images"].shape == (8, 1, 12, 12)
        assert archive["labels"].tolist() == [1] * 4 + [0] * 4 and archive["latents"].shape == (8, 4)
    generated = load_dataset(out)  # what `cvae-sdk train --data s.npz` reads
    assert len(generated.train) == 8 and generated.class_names == ("top", "middle", "bottom")


@pytest.mark.parametrize(("args", "message"), [
    (["--label", "9"], "out of range"),
    (["--label", "sideways"], "unknown class name"),
    (["--label", "0", "--n", "0"], "num_samples_per_label must be an int >= 1"),
    (["--label", "0", "--temperature", "-1"], "temperature must be finite and in [0, 10]"),
    (["--label", "0", "--temperature", "1e308"], "temperature must be finite and in [0, 10]"),
    (["--label", "0", "--shard", "3/3"], "--shard"),
])
def test_cli_errors_are_one_line_without_traceback(tiny_model: Path, tmp_path: Path, args: list[str],
                                                   message: str) -> None:
    out = tmp_path / "x.npy"
    done = cvae("sample", "--model", str(tiny_model), "--out", str(out), *args)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_unwritable_out_and_missing_model(tiny_model: Path, tmp_path: Path) -> None:
    done = cvae("sample", "--model", str(tiny_model), "--label", "0", "--out", str(tmp_path / "no" / "dir" / "x.png"))
    assert done.returncode == 2 and "does not exist" in done.stderr
    done = cvae("sample", "--model", str(tmp_path / "nope.onnx"), "--label", "0", "--out", str(tmp_path / "x.png"))
    assert done.returncode == 2 and "does not exist" in done.stderr
    done = cvae("sample", "--model", str(tiny_model), "--label", "0", "--out", str(tmp_path / "x.gif"))
    assert done.returncode == 2 and ".png" in done.stderr


@pytest.mark.parametrize(("name", "n", "message"), [
    ("x.png", "1000000000", "at most 64 samples per label"),
    ("x.npy", "1000000000000", "GiB free"),
    ("x.npz", "100000000", "built in memory"),
])
def test_outputs_too_large_are_refused_before_any_allocation(tiny_model: Path, tmp_path: Path, name: str, n: str,
                                                             message: str) -> None:
    """A billion PNG cells, a .npy larger than the disk, a .npz larger than memory: refused up front."""
    done = cvae("sample", "--model", str(tiny_model), "--label", "0", "--label", "1", "--n", n,
                "--out", str(tmp_path / name))
    assert done.returncode == 2 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_export_refuses_a_missing_folder_as_sample_does(tiny_run: Path, tmp_path: Path) -> None:
    target = tmp_path / "no" / "dir" / "m.onnx"
    done = cvae("export", str(tiny_run), "--out", str(target), "--allow-low-fidelity")
    assert done.returncode == 2 and "does not exist; create it first" in done.stderr
    assert not (tmp_path / "no").exists()


@pytest.mark.parametrize("name", ["x.png", "x.npy", "x.npz"])
def test_unwritable_out_is_one_line(tiny_model: Path, name: str) -> None:
    # /proc refuses new files even for root, for whom permission bits do not apply
    done = cvae("sample", "--model", str(tiny_model), "--label", "0", "--n", "2", "--out", f"/proc/{name}")
    assert done.returncode == 2 and done.stderr.startswith("error: ") and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_train_refuses_existing_run_and_bad_data(tiny_run: Path, tiny_npz: Path, tmp_path: Path) -> None:
    done = cvae("train", "--data", str(tiny_npz), "--out", str(tiny_run), "--quiet")
    assert done.returncode == 2 and "--resume" in done.stderr
    done = cvae("train", "--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "r"), "--quiet")
    assert done.returncode == 2 and "does not exist" in done.stderr
    done = cvae("train", "--data", str(tiny_npz), "--out", str(tmp_path / "r"), "--epochs", "0", "--quiet")
    assert done.returncode == 2 and "epochs must be >= 1" in done.stderr


def test_python_dash_m_and_help() -> None:
    done = cvae("--help")
    assert done.returncode == 0
    for command in ("train", "export", "sample", "evaluate", "info"):
        assert command in done.stdout


def test_help_names_values_not_python_types_and_version_prints() -> None:
    done = cvae("sample", "--help")
    assert done.returncode == 0
    assert "--label LABEL" in done.stdout and "--provider PROVIDER" in done.stdout and "--shard K/N" in done.stdout
    for command in ("export", "evaluate", "validate", "wrap", "info", "serve", "bench"):
        text = cvae(command, "--help").stdout
        assert "<list[" not in text and "<bool>" not in text and "{source}" not in text and "{model}" not in text
    version = cvae("--version")
    assert version.returncode == 0 and version.stdout.startswith("cvae-sdk 0.1.0")


def test_info_says_which_providers_really_sample(tiny_model: Path) -> None:
    info = json.loads(cvae("info", str(tiny_model), "--json").stdout)
    import onnxruntime as ort

    assert info["available_providers"] == ort.get_available_providers()
    assert "CPUExecutionProvider" in info["sampling_providers"]
    assert set(info["sampling_providers"]) <= {"CUDAExecutionProvider", "CPUExecutionProvider"}
    assert "AzureExecutionProvider" not in info["sampling_providers"]
    shown = cvae("info", str(tiny_model)).stdout  # the per-class temperatures sampling uses, and the contrast
    assert "class_temperatures:" in shown and "output_contrast:" in shown


def test_variant_selects_the_int8_file_beside_the_model(tiny_model: Path, tmp_path: Path) -> None:
    """--variant int8 loads MODEL.int8.onnx (the shipped model has one); a model without it says how to write it."""
    info = json.loads(cvae("info", "--variant", "int8", "--json").stdout)
    assert info["model_path"].endswith("mnist-cvae.int8.onnx") and info["quantization"] == "int8-static"
    missing = cvae("sample", "--model", str(tiny_model), "--variant", "int8", "--label", "0", "--out",
                   str(tmp_path / "x.png"))
    assert missing.returncode == 2 and "--int8" in missing.stderr and "Traceback" not in missing.stderr
    assert not (tmp_path / "x.png").exists()
