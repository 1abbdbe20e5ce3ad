"""`cvae-sdk bench` end to end on the tiny model: real engines in subprocesses, a table, then one JSON line."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from cvae_sdk.bench import flops_per_sample
from cvae_sdk.bench.run import ROUNDS


def test_bench_measures_engines_and_reports_ratios(tiny_model: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cvae_sdk", "bench", "--model", str(tiny_model), "--batch", "1", "--batch", "16",
         "--engine", "sdk-fp32", "--engine", "torch-eager", "--engine", "openvino", "--engine", "sdk-cuda",
         "--engine", "sdk-int8", "--engine", "openvino-int8",
         "--min-seconds", "0.05", "--threads", "1", "--out-dir", str(tmp_path)],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert json.loads((tmp_path / "bench.json").read_text())["rows"] == report["rows"]
    assert (tmp_path / "bench.png").read_bytes()[:4] == b"\x89PNG"
    measured = {(r["engine"], r["batch"]) for r in report["rows"]}
    assert measured == {(e, b) for e in ("sdk-fp32", "torch-eager", "openvino") for b in (1, 16)}
    for row in report["rows"]:
        assert row["samples_per_s"] > 0 and row["p99_us"] >= row["p50_us"] > 0 and row["peak_rss_mb"] > 0
        assert row["calls"] >= ROUNDS * 2  # every engine timed in each round, two calls a window at least
        assert 0 < row["roofline_ratio"] < 1.5
    assert report["flops_per_sample"] == flops_per_sample(tiny_model) > 0
    assert report["rounds"] == ROUNDS
    assert set(report["ratios"]["sdk-fp32/torch-eager"]) == {"1", "16"}
    rate = {(r["engine"], r["batch"]): r["samples_per_s"] for r in report["rows"]}
    for batch, best in report["vs_best_competitor"].items():  # the fastest of torch and OpenVINO, per batch
        rivals = {e: rate[(e, int(batch))] for e in ("torch-eager", "openvino")}
        assert best["best_competitor"] == max(rivals, key=lambda e: rivals[e])
        assert best["sdk-fp32/best"] == rate[("sdk-fp32", int(batch))] / max(rivals.values())
    assert report["host_load"]["other_busy_cores"] >= 0 and "warning" in report["host_load"]
    assert all("no int8 artifact" in report["skipped"][e] for e in ("sdk-int8", "openvino-int8"))
    if "CUDAExecutionProvider" not in ort.get_available_providers():  # asked for, not silently run on CPU
        assert "CUDAExecutionProvider" in report["skipped"]["sdk-cuda"]
    batcher = report["batcher"]
    assert batcher["speedup"] > 0 and batcher["ceiling_speedup"] == batcher["ceiling_samples_per_s"] / batcher[
        "direct_samples_per_s"] > 0
    table = done.stdout.split("\n{")[0]
    assert "sdk-fp32" in table and "skipped" in table and "batcher:" in table and "best float32 competitor" in table
    assert "roofline: float32 peak" in table and report["gemm"]["float32_flops_per_s"] == report["gemm_flops_per_s"]


def test_int8_is_compared_with_int8_rivals_too_and_fp32_only_with_float32_ones() -> None:
    from cvae_sdk.bench import vs_best_competitor

    rates = {"torch-eager": 10.0, "torch-compile": 30.0, "openvino": 20.0, "openvino-int8": 50.0,
             "sdk-fp32": 45.0, "sdk-int8": 60.0}
    report = vs_best_competitor([{"engine": e, "batch": 16, "samples_per_s": v} for e, v in rates.items()])
    assert report == {"16": {"best_competitor": "torch-compile", "sdk-fp32/best": 1.5,
                             "best_competitor_int8": "openvino-int8", "sdk-int8/best": 1.2}}


def test_the_openvino_engine_draws_what_the_sdk_draws(tiny_model: Path) -> None:
    """Same work: OpenVINO decodes the SDK's own prior draws, so its samples match generate's."""
    from cvae_sdk import Generator
    from cvae_sdk.bench.engines import openvino_engine

    make, providers = openvino_engine(tiny_model, threads=1)
    gen = Generator.from_pretrained(tiny_model, providers=["CPUExecutionProvider"])
    want = gen.generate(np.arange(5) % gen.config.num_classes, 1, rng=0).samples
    assert providers[0].startswith("openvino") and np.abs(make(5)() - want).max() < 1e-4


def test_a_loaded_host_is_reported() -> None:
    from cvae_sdk.bench.timing import cpu_seconds, host_load

    start = cpu_seconds()
    busy = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 1.5: pass"])
    time.sleep(1.5)  # another process keeps a core busy while this one sleeps
    load = host_load(start, 1.5)
    busy.wait()
    assert load["other_busy_cores"] > 0.5 and "the host was loaded" in load["warning"]


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


def test_the_peak_is_measured_without_the_hosts_avx2_pin_and_names_its_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """OPENBLAS_CORETYPE=Haswell halves an AVX-512 CPU's GEMM peak: the roofline is measured without it (and
    with it, for comparison), names the BLAS kernel of each, and gives int8 a peak of its own."""
    from cvae_sdk.bench import gemm_peaks

    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    monkeypatch.setenv("OPENBLAS_L2_SIZE", "512")  # both pins, whichever of them the host sets
    peaks = gemm_peaks(1)
    assert peaks["environment_unset"] == {"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": "512"}
    assert peaks["blas_as_set"][0]["architecture"] == "Haswell"          # the pin, as the host set it
    assert peaks["blas"][0]["internal_api"] == "openblas"                # numpy's BLAS, chosen by the CPU
    assert peaks["float32_flops_per_s"] > 0 and peaks["float32_flops_per_s_as_set"] > 0
    assert peaks["int8_ops_per_s"] > 0 and "MatMulInteger" in peaks["int8_how"]
