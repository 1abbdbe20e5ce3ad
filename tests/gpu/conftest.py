"""Tests that need an NVIDIA GPU and onnxruntime-gpu. Everywhere else they are collected and skipped
with the reason; on a GPU machine ``python -m pytest tests/gpu`` runs them (``benchmarks/gpu_run.sh``
does, after installing onnxruntime-gpu).

"CUDA is usable" means more than onnxruntime listing the provider: onnxruntime-gpu lists it on any
machine and silently falls back to CPU. So a session is opened and its providers are read back.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

CUDA = "CUDAExecutionProvider"
# TF32 off (onnxruntime's default is on) so float32 on the GPU is compared with float32 on the CPU
CUDA_FP32 = [(CUDA, {"use_tf32": "0"}), "CPUExecutionProvider"]
KERNEL = Path(__file__).resolve().parents[2] / "cvae_sdk" / "kernels" / "take_rows.onnx"


@functools.cache
def cuda_unusable() -> str | None:
    """Why the CUDA tests cannot run here, or None when a session really runs on CUDA."""
    import onnxruntime as ort

    if CUDA not in ort.get_available_providers():
        return f"onnxruntime {ort.__version__} has no CUDA provider (install cvae-sdk[gpu] on a GPU machine)"
    if hasattr(ort, "preload_dlls"):
        ort.preload_dlls()
    options = ort.SessionOptions()
    options.log_severity_level = 4
    session = ort.InferenceSession(str(KERNEL), options, providers=[CUDA, "CPUExecutionProvider"])
    if session.get_providers()[0] != CUDA:
        return f"onnxruntime lists CUDA but the session fell back to {session.get_providers()} (no GPU or driver)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).resolve().parent
    gpu_items = [item for item in items if here in Path(str(item.fspath)).resolve().parents]
    if not gpu_items:
        return
    reason = cuda_unusable()
    for item in gpu_items:
        item.add_marker(pytest.mark.gpu)
        if reason:
            item.add_marker(pytest.mark.skip(reason=f"needs a GPU: {reason}"))
