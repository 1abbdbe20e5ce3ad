"""Where the decoder's time goes in onnxruntime and in OpenVINO, op by op, on the same ONNX files.

For the shipped float32 file and its int8 variant, at each batch, both engines decode the same
(z, y) rows in one call with 2 threads: onnxruntime with its profiler on (kernel time per node),
OpenVINO's CPU plugin (float32 forced, LATENCY hint, as the bench runs it) with its per-layer
counters. The decoder alone is timed: the prior draw, which both engines share in the bench, is
left out. Writes one JSON file; ``--execution-provider`` instead measures onnxruntime's OpenVINO
execution provider against its CPU provider (run it with the ``onnxruntime-openvino`` package,
which replaces ``onnxruntime`` and so lives in a virtual environment of its own).

    python benchmarks/engine_profile.py --out benchmarks/results/engine_profile.json
    PYTHONPATH=. /tmp/ovep/bin/python benchmarks/engine_profile.py --execution-provider \
        --out benchmarks/results/openvino_ep.json   # a venv with onnxruntime-openvino and numpy
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cvae_sdk.bench import machine, time_calls

ROOT = Path(__file__).resolve().parents[1]
FILES = {"fp32": ROOT / "exported" / "mnist-cvae.onnx", "int8": ROOT / "exported" / "mnist-cvae.int8.onnx"}
THREADS, RUNS = 2, 15


def feeds(rows: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"z": rng.standard_normal((rows, 16)).astype(np.float32),
            "y": np.eye(10, dtype=np.float32)[np.arange(rows) % 10]}


def rate(call: Callable[[], object], rows: int) -> float:
    """Rows per second of the median call, timed as the bench times its engines."""
    return rows / statistics.median(time_calls(call, min_seconds=1.0, max_calls=1000, warmup=3))


def onnxruntime_ops(path: Path, rows: int) -> dict[str, Any]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    plain = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    inputs = feeds(rows)
    samples_per_s = rate(lambda: plain.run(None, inputs), rows)
    options.enable_profiling = True
    options.profile_file_prefix = str(Path(tempfile.mkdtemp()) / "ort")
    profiled = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    for _ in range(RUNS):
        profiled.run(None, inputs)
    events = json.loads(Path(profiled.end_profiling()).read_text())
    per_op: collections.Counter[str] = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_op[f"{event['args']['op_name']} {event['name'].removesuffix('_kernel_time')}"] += event["dur"]
    by_op = {op: us / RUNS / 1000 for op, us in per_op.most_common()}
    return {"samples_per_s": samples_per_s, "ms_per_call_total": sum(by_op.values()), "ms_per_call_by_op": by_op}


def openvino_ops(path: Path, rows: int) -> dict[str, Any]:
    import openvino as ov

    config = {"INFERENCE_NUM_THREADS": THREADS, "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
    inputs = feeds(rows)
    request = ov.Core().compile_model(str(path), "CPU", config).create_infer_request()
    samples_per_s = rate(lambda: request.infer(inputs), rows)
    counted = ov.Core().compile_model(str(path), "CPU", {**config, "PERF_COUNT": True}).create_infer_request()
    for _ in range(RUNS):
        counted.infer(inputs)
    layers = sorted(counted.profiling_info, key=lambda p: -p.real_time.total_seconds())
    by_op = {f"{p.node_type} [{p.exec_type}] {p.node_name}": p.real_time.total_seconds() * 1000
             for p in layers if p.real_time.total_seconds() > 0}
    return {"samples_per_s": samples_per_s, "version": ov.__version__, "ms_per_call_total": sum(by_op.values()),
            "ms_per_call_by_op": by_op}


def profiles(batches: list[int]) -> dict[str, Any]:
    import onnxruntime as ort

    rows = []
    for variant, path in FILES.items():
        for batch in batches:
            ort_side, ov_side = onnxruntime_ops(path, batch), openvino_ops(path, batch)
            rows.append({"variant": variant, "batch": batch, "onnxruntime": ort_side, "openvino": ov_side,
                         "onnxruntime/openvino": ort_side["samples_per_s"] / ov_side["samples_per_s"]})
    return {"benchmark": "engine_profile", "onnxruntime": ort.__version__, "threads": THREADS, "rows": rows}


def execution_provider(batches: list[int]) -> dict[str, Any]:
    import onnxruntime as ort

    rows = []
    options_ep = {"device_type": "CPU", "num_of_threads": str(THREADS), "precision": "FP32"}
    provider = ("OpenVINOExecutionProvider", options_ep)
    for variant, path in FILES.items():
        for batch in batches:
            inputs, measured = feeds(batch), {}
            for name, providers in (("cpu", ["CPUExecutionProvider"]), ("openvino_ep", [provider])):
                options = ort.SessionOptions()
                options.intra_op_num_threads = THREADS
                session = ort.InferenceSession(str(path), options, providers=providers)
                measured[name] = (rate(lambda s=session, x=inputs: s.run(None, x), batch),
                                  session.run(None, inputs)[0], session.get_providers()[0])
            rows.append({"variant": variant, "batch": batch, "cpu_samples_per_s": measured["cpu"][0],
                         "openvino_ep_samples_per_s": measured["openvino_ep"][0],
                         "openvino_ep/cpu": measured["openvino_ep"][0] / measured["cpu"][0],
                         "max_abs_difference": float(np.abs(measured["cpu"][1] - measured["openvino_ep"][1]).max()),
                         "provider_in_use": measured["openvino_ep"][2]})
    return {"benchmark": "openvino_execution_provider", "onnxruntime": ort.__version__, "threads": THREADS,
            "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, action="append", default=None)
    parser.add_argument("--execution-provider", action="store_true")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    report = (execution_provider(args.batch or [1, 256, 4096]) if args.execution_provider
              else profiles(args.batch or [256, 4096]))
    report["machine"] = machine()
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    for row in report["rows"]:
        print(json.dumps({k: v for k, v in row.items() if not isinstance(v, dict)}))


if __name__ == "__main__":
    main()
