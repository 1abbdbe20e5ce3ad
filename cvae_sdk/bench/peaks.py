"""The rooflines: the CPU's float32 and int8 matrix rates, the GPU's GEMM rates, the model's FLOPs."""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

# Some hosts set these to pin OpenBLAS to its AVX2 kernel (half the peak of a full-width AVX-512 CPU);
# the peak is measured without them, in its own process only: tests, CI and the engines keep them.
PEAK_ENV_UNSET = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def gemm_flops(threads: int, n: int = 2048, repeats: int = 5, *, as_set: bool = False) -> dict[str, Any]:
    """Median float32 GEMM FLOP/s in a subprocess with ``threads`` BLAS threads, and the BLAS kernel that ran.

    Measured with :data:`PEAK_ENV_UNSET` removed from the environment, unless ``as_set``. The kernel
    comes from threadpoolctl (None without it).
    """
    code = ("import json, numpy as np, time, statistics\n"
            f"a = np.random.default_rng(0).standard_normal(({n}, {n}), dtype=np.float32); b = a.T.copy()\n"
            "a @ b\nts = []\n"
            f"for _ in range({repeats}):\n    t = time.perf_counter(); a @ b; ts.append(time.perf_counter() - t)\n"
            "try:\n    import threadpoolctl\n"
            "    blas = [{k: i.get(k) for k in ('internal_api', 'architecture', 'version', 'num_threads')}\n"
            "            for i in threadpoolctl.threadpool_info() if i.get('user_api') == 'blas']\n"
            "except ImportError:\n    blas = None\n"
            f"print(json.dumps({{'flops_per_s': 2 * {n}**3 / statistics.median(ts), 'blas': blas}}))")
    env = {**os.environ, **{k: str(threads) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}}
    if not as_set:
        for name in PEAK_ENV_UNSET:
            env.pop(name, None)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def gemm_peaks(threads: int) -> dict[str, Any]:
    """The CPU's float32 and int8 matrix rates, and how each was measured (the bench JSON's ``gemm``)."""
    peak = gemm_flops(threads)
    found = {name: os.environ[name] for name in PEAK_ENV_UNSET if name in os.environ}
    report: dict[str, Any] = {"float32_flops_per_s": peak["flops_per_s"], "blas": peak["blas"],
                              "float32_how": "numpy float32 2048x2048 GEMM, median of 5, in a subprocess with "
                                             f"{threads} BLAS threads and {', '.join(PEAK_ENV_UNSET)} unset",
                              "environment_unset": found, "int8_ops_per_s": int8_gemm_ops(threads),
                              "int8_how": "onnxruntime MatMulInteger (uint8 x int8 -> int32) 2048x2048, median of "
                                          f"5, {threads} intra-op threads"}
    if found:  # what the host's own settings give, for comparison
        as_set = gemm_flops(threads, as_set=True)
        report["float32_flops_per_s_as_set"], report["blas_as_set"] = as_set["flops_per_s"], as_set["blas"]
    return report


def int8_gemm_ops(threads: int, n: int = 2048, repeats: int = 5) -> float | None:
    """Median int8 matrix-multiply rate (2 n^3 / s) of onnxruntime's MatMulInteger; None without onnx."""
    try:
        from onnx import TensorProto, helper
    except ImportError:
        return None
    import onnxruntime as ort
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "b"], ["c"])], "int8_peak",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [n, n]),
         helper.make_tensor_value_info("b", TensorProto.INT8, [n, n])],
        [helper.make_tensor_value_info("c", TensorProto.INT32, [n, n])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {"a": rng.integers(0, 256, (n, n), dtype=np.uint8), "b": rng.integers(-128, 128, (n, n), dtype=np.int8)}
    session.run(None, feeds)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times)


def gemm_flops_cuda(dtype: str, n: int = 8192, repeats: int = 10) -> float | None:
    """Median GEMM FLOP/s on the GPU with torch (``float32`` without TF32, or ``float16``); None without one."""
    code = ("import torch, time, statistics\n"
            "assert torch.cuda.is_available()\n"
            "torch.backends.cuda.matmul.allow_tf32 = False\n"
            f"a = torch.randn({n}, {n}, device='cuda', dtype=torch.{dtype}); b = torch.randn_like(a)\n"
            "a @ b; torch.cuda.synchronize(); ts = []\n"
            f"for _ in range({repeats}):\n"
            "    t = time.perf_counter(); a @ b; torch.cuda.synchronize(); ts.append(time.perf_counter() - t)\n"
            f"print(2 * {n}**3 / statistics.median(ts))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return float(done.stdout.strip()) if done.returncode == 0 else None


def flops_per_sample(model: Path) -> float:
    """Multiply-adds x 2 per sample of every Gemm/MatMul/Conv/ConvTranspose in the graph (needs onnx)."""
    import onnx
    from onnx import shape_inference

    graph = shape_inference.infer_shapes(onnx.load(str(model))).graph
    shapes: dict[str, list[int]] = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]  # 0: dynamic
              for v in [*graph.value_info, *graph.input, *graph.output]}
    shapes.update({init.name: list(init.dims) for init in graph.initializer})
    total = 0.0
    for node in graph.node:
        if node.op_type in ("Gemm", "MatMul", "MatMulInteger"):
            w = shapes[node.input[1]]
            trans_b = any(a.name == "transB" and a.i for a in node.attribute)
            k, n = (w[1], w[0]) if trans_b else (w[-2], w[-1])
            total += 2.0 * k * n
        elif node.op_type in ("Conv", "ConvTranspose"):
            w, out, inp = shapes[node.input[1]], shapes[node.output[0]], shapes[node.input[0]]
            spatial = math.prod(out[2:] if node.op_type == "Conv" else inp[2:])
            total += 2.0 * math.prod(w) * spatial  # the weight holds Cout*Cin/g*kh*kw (Cin*Cout/g*kh*kw)
    return total


def machine() -> dict[str, Any]:
    cpu = "unknown"
    if Path("/proc/cpuinfo").is_file():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}

