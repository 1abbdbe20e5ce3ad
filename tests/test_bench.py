"""`cvae-sdk bench` end to end on the tiny model: real engines in subprocesses, a table, then one JSON line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import onnxruntime as ort

from cvae_sdk.bench import flops_per_sample


def test_bench_measures_engines_and_reports_ratios(tiny_model: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cvae_sdk", "bench", "--model", str(tiny_model), "--batch", "1", "--batch", "16",
         "--engine", "sdk-fp32", "--engine", "torch-eager", "--engine", "sdk-cuda", "--engine", "sdk-int8",
         "--min-seconds", "0.05", "--threads", "1", "--out-dir", str(tmp_path)],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert json.loads((tmp_path / "bench.json").read_text())["rows"] == report["rows"]
    assert (tmp_path / "bench.png").read_bytes()[:4] == b"\x89PNG"
    measured = {(r["engine"], r["batch"]) for r in report["rows"]}
    assert measured == {(e, b) for e in ("sdk-fp32", "torch-eager") for b in (1, 16)}
    for row in report["rows"]:
        assert row["samples_per_s"] > 0 and row["p99_us"] >= row["p50_us"] > 0 and row["peak_rss_mb"] > 0
        assert 0 < row["roofline_ratio"] < 1.5
    assert report["flops_per_sample"] == flops_per_sample(tiny_model) > 0
    assert set(report["ratios"]["sdk-fp32/torch-eager"]) == {"1", "16"}
    assert "no int8 artifact" in report["skipped"]["sdk-int8"]
    if "CUDAExecutionProvider" not in ort.get_available_providers():  # asked for, not silently run on CPU
        assert "CUDAExecutionProvider" in report["skipped"]["sdk-cuda"]
    batcher = report["batcher"]
    assert batcher["speedup"] > 0 and batcher["ceiling_speedup"] == batcher["ceiling_samples_per_s"] / batcher[
        "direct_samples_per_s"] > 0
    table = done.stdout.split("\n{")[0]
    assert "sdk-fp32" in table and "skipped" in table and "batcher:" in table


def test_the_torch_engines_decode_the_artifacts_own_weights() -> None:
    """The shipped file predates the split first layer: its (out, D + K) weight loads all the same."""
    import torch
    from cvae_sdk_training.bench_engines import torch_generative_path

    from cvae_sdk import Generator, shipped_model_path

    gen = Generator.from_pretrained(shipped_model_path(), providers=["CPUExecutionProvider"])
    out = gen.generate(list(range(10)), 3, rng=0)
    with torch.inference_mode():
        module, config = torch_generative_path(shipped_model_path())
        rebuilt = module(torch.from_numpy(out.latents), torch.eye(10)[torch.from_numpy(out.labels)]).numpy()
    assert config.latent_dim == 16
    assert abs(rebuilt - out.samples).max() < 1e-5
