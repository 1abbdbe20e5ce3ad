"""Sampling throughput: the SDK against PyTorch on the same weights, in one run.

Each engine runs in its own subprocess, so its peak RSS is its own. For every batch size the
engine is warmed up, then called repeatedly; samples/s comes from the median call. The roofline
ratio divides achieved FLOP/s (FLOPs per sample counted from the ONNX graph) by a float32 GEMM
measured in the same run with the same threads (without a host's pin of OpenBLAS to its AVX2
kernel, which halves an AVX-512 CPU's peak: :data:`PEAK_ENV_UNSET`), or for the int8 engines by
onnxruntime's int8 matrix multiply; the JSON's ``gemm`` says which BLAS kernel ran and how.

Engines: ``sdk-fp32``, ``sdk-int8`` (given an int8 artifact), ``torch-eager`` and
``torch-compile`` (the torch training backend's ``bench_engine``, which needs the [train] extra;
the decoder is rebuilt from the artifact's own initializers), ``openvino`` and ``openvino-int8``
(OpenVINO's CPU plugin on the float32 and the int8 file; the [openvino] extra), and on CUDA machines the SDK's CUDA
fast path against PyTorch CUDA eager, like with like: ``sdk-cuda`` and ``torch-cuda`` copy float32
samples to the host; ``sdk-cuda-device`` and ``torch-cuda-device`` leave them on the GPU;
``sdk-cuda-uint8`` converts on the device (a quarter of the bytes to the host) and
``sdk-cuda-fp16`` runs a float16 artifact, output on the GPU.

Every engine does the same work: it samples the artifact's whole mixture prior at its temperature
and decodes it in chunks, each engine in the chunk size it ran fastest in on CPU
(``benchmarks/chunk_size.py``). What differs, and is stated: torch draws its noise where it runs
(on the GPU for CUDA), the SDK on the host (counter-based, so samples do not depend on batching).
TF32 is off on both sides (onnxruntime's ``use_tf32=0``; torch's matmul and cuDNN flags), and the
CUDA roofline is a GEMM timed with torch on the same GPU in the same precision (float32 without
TF32; float16 for the fp16 engine).

One file per job: ``timing`` (timing calls, the host's load), ``peaks`` (the rooflines), ``engines``
(what is timed, in a subprocess each), ``report`` (ratios, table, plot) and ``run`` (one whole run).
"""

from __future__ import annotations

from cvae_sdk.bench.peaks import flops_per_sample, gemm_peaks, machine
from cvae_sdk.bench.report import format_table, plot, vs_best_competitor
from cvae_sdk.bench.run import BATCHES, run_benchmark
from cvae_sdk.bench.timing import time_calls

__all__ = ["BATCHES", "flops_per_sample", "format_table", "gemm_peaks", "machine", "plot", "run_benchmark",
           "time_calls", "vs_best_competitor"]
