"""Execution-provider choice for onnxruntime sessions, checked against what actually loaded.

onnxruntime-gpu lists CUDAExecutionProvider even on a machine without a GPU and then silently
runs on CPU; so the providers a session really uses are read back and compared with the request.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"
ProviderSpec = str | tuple[str, dict[str, Any]]


class ProviderUnavailableError(ValueError):
    """A requested execution provider is not installed or did not load."""


def provider_name(spec: ProviderSpec) -> str:
    return spec if isinstance(spec, str) else spec[0]


def requested_providers(providers: str | Sequence[ProviderSpec], available: Sequence[str]
                        ) -> list[ProviderSpec]:
    """Expand ``"auto"`` (CUDA when listed, then CPU) or validate an explicit list."""
    if isinstance(providers, str):
        if providers == "auto":
            return [CUDA, CPU] if CUDA in available else [CPU]
        providers = [providers]
    specs = list(providers)
    if not specs:
        raise ValueError("providers must be 'auto' or a non-empty list of execution providers")
    for spec in specs:
        if not isinstance(spec, (str, tuple)):
            raise TypeError(f"each provider must be a name or a (name, options) tuple, got {spec!r}")
        if provider_name(spec) not in available:
            raise ProviderUnavailableError(
                f"execution provider {provider_name(spec)!r} is not available in this onnxruntime; "
                f"available: {list(available)}. For CUDA install 'cvae-sdk[gpu]' (and not [cpu])")
    return specs


def cuda_options(spec: ProviderSpec, *, graphs: bool) -> ProviderSpec:
    """CUDA gets the fast-path options, under any options the caller gave; other providers are kept.

    HEURISTIC cuDNN algorithm search: the default exhaustive search reruns for every new batch
    shape. TF32 off (onnxruntime's default is on): float32 samples then agree with the CPU
    provider's to about 1e-5 and a seed means the same image on every device; pass
    ``("CUDAExecutionProvider", {"use_tf32": "1"})`` to trade that for tensor-core speed, or use
    the fp16 variant. ``enable_cuda_graph`` is set per session: the plain session never captures,
    each bucket's session does (see fastpath).
    """
    if provider_name(spec) != CUDA:
        return spec
    given = {} if isinstance(spec, str) else dict(spec[1])
    return (CUDA, {"cudnn_conv_algo_search": "HEURISTIC", "use_tf32": "0", **given,
                   "enable_cuda_graph": "1" if graphs else "0"})


def check_loaded(requested: Sequence[ProviderSpec], in_use: Sequence[str], auto: bool) -> None:
    """Raise if an explicitly requested provider did not load (auto may fall back to CPU)."""
    if auto:
        return
    missing = [provider_name(s) for s in requested if provider_name(s) not in in_use]
    if missing:
        raise ProviderUnavailableError(
            f"execution provider(s) {missing} were requested but did not load (the session uses "
            f"{list(in_use)}); check the CUDA driver and libraries, or pass providers=['{CPU}']")
