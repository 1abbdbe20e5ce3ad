"""The short table that ends ``benchmarks/gpu_run.sh``: tests, the bench against the issue's GPU
targets, serving and training, read from the result files in OUT_DIR; also written as summary.json.

    python benchmarks/gpu_summary.py OUT_DIR
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any


def tests(out: Path) -> dict[str, Any]:
    path = out / "gpu-tests.xml"
    if not path.is_file():
        return {"error": "no gpu-tests.xml"}
    suite = ElementTree.parse(path).getroot().find("testsuite")
    assert suite is not None
    counts = {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}
    failed = [case.get("name") for case in suite.iter("testcase")
              if case.find("failure") is not None or case.find("error") is not None]
    properties = {case.get("name"): {p.get("name"): _number(p.get("value") or "") for p in case.iter("property")}
                  for case in suite.iter("testcase") if case.find("properties") is not None}
    return {**counts, "failed": failed, "properties": properties}


def _number(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def bench(out: Path) -> dict[str, Any]:
    path = out / "bench.json"
    if not path.is_file():
        return {}
    report = json.loads(path.read_text())
    rate = {(r["engine"], r["batch"]): r for r in report["rows"]}
    peaks = report.get("gemm_cuda_flops_per_s") or {}
    per_sample = report.get("flops_per_sample") or 0.0
    summary: dict[str, Any] = {"gemm_cuda_tflops": {k: v / 1e12 for k, v in peaks.items() if v},
                               "vs_best_competitor": report.get("vs_best_competitor"), "skipped": report["skipped"]}
    eager = {b: rate[("sdk-cuda", b)]["samples_per_s"] / rate[("torch-cuda", b)]["samples_per_s"]
             for (e, b) in rate if e == "sdk-cuda" and ("torch-cuda", b) in rate}
    summary["sdk_cuda_over_torch_cuda_eager"] = eager
    for engine, dtype in (("sdk-cuda", "float32"), ("sdk-cuda-device", "float32"), ("sdk-cuda-fp16", "float16")):
        row = rate.get((engine, 65536))
        if row and peaks.get(dtype) and per_sample:
            summary[f"{engine}_65536_fraction_of_{dtype}_gemm"] = row["samples_per_s"] * per_sample / peaks[dtype]
    if ("sdk-cuda", 1) in rate:
        summary["generate_1_p99_us"] = rate[("sdk-cuda", 1)]["p99_us"]
        summary["generate_1_p50_us"] = rate[("sdk-cuda", 1)]["p50_us"]
    return summary


def main() -> None:
    out = Path(sys.argv[1])
    summary: dict[str, Any] = {"tests": tests(out), "bench": bench(out)}
    for name in ("serve_load", "train", "machine", "memory"):
        path = out / f"{name}.json"
        if path.is_file():
            summary[name] = json.loads(path.read_text())
    serve = summary.get("serve_load", {})
    t = summary["tests"]
    print(f"tests/gpu: {t.get('tests', 0)} run, {t.get('failures', 0)} failed, {t.get('errors', 0)} errors, "
          f"{t.get('skipped', 0)} skipped {t.get('failed') or ''}")
    b = summary["bench"]
    if b:
        print("GEMM on the GPU (TFLOP/s):", {k: round(v, 1) for k, v in b["gemm_cuda_tflops"].items()})
        print("sdk-cuda / torch-cuda eager:", {k: round(v, 2) for k, v in b["sdk_cuda_over_torch_cuda_eager"].items()})
        for batch, entry in (b.get("vs_best_competitor") or {}).items():
            print(f"  batch {batch:>6}:", {k: (round(v, 2) if isinstance(v, float) else v) for k, v in entry.items()
                                          if "cuda" in k})
        for key in [k for k in b if "fraction" in k or "generate_1" in k]:
            print(f"  {key}: {b[key]:.3g}")
    if serve:
        print(f"serve on CUDA: 64 clients / 1 client = {serve['speedup_64_vs_1']:.2f}x "
              f"({serve['rows'][-1]['requests_per_s']:.0f} req/s, p99 {serve['rows'][-1]['p99_ms']:.1f} ms)")
    if "train" in summary:
        tr = summary["train"]
        print(f"train --device {tr['device']}: {tr['epochs']} epochs in {tr['train_seconds']:.1f} s, export "
              f"{tr['export_seconds']:.1f} s, samples on {tr['sample_providers'][0]}")
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
