"""The PyTorch reference engines of ``cvae-sdk bench``: the artifact's decoder rebuilt in torch from
its own initializers, sampling the same mixture prior at the same temperature, decoded in chunks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from cvae_sdk.bench.engines import Engine
from cvae_sdk.generator import GPU_CHUNK, Generator

from .export import ExportCheckError, GenerativePath, check_parity, exported_decoder
from .model import CVAE, ModelConfig

# Rows per torch call on CPU, the chunk each mode ran fastest in of those tried (results/chunk_size.json):
# 256 eager, 1,024 compiled; on a GPU the SDK's GPU_CHUNK.
TORCH_EAGER_CHUNK, TORCH_COMPILE_CHUNK = 256, 1024


def torch_generative_path(model: Path) -> tuple[Any, Any]:
    """The artifact's decoder rebuilt in PyTorch from its own initializers (the bench's torch engines),
    with the artifact's config."""
    config = Generator.from_pretrained(model, providers=["CPUExecutionProvider"]).config
    module = GenerativePath(exported_decoder(CVAE(ModelConfig.from_dict(config.model_config))))
    graph = onnx.load(str(model)).graph
    weights = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in graph.initializer}
    # every decoder tensor by name; files from before the first layer's split load through the
    # decoder's own renaming (one (out, D + K) weight becomes z_weight and y_weight)
    module.load_state_dict({k: v for k, v in weights.items() if k.startswith("decoder.")}, strict=True)
    _check_same_function(module.eval(), model, config)
    return module, config


def _check_same_function(module: torch.nn.Module, model: Path, config: Any) -> None:
    """The rebuilt module must compute what the file computes (export's own parity check), or the
    torch rows would time another model."""
    try:
        check_parity(module, Path(model).read_bytes(), config)
    except ExportCheckError as err:
        raise ValueError(f"{model}: the PyTorch rebuild of its decoder differs from the file, so the bench "
                         f"cannot time it in torch ({err})") from err


def torch_engine(model: Path, threads: int, device: str, *, compiled: bool, to_host: bool = True,
                 graphs: bool = False, chunk: int | None = None) -> Engine:
    """Returns (batch -> timed call, the engine's label); the call samples and decodes one batch,
    ``chunk`` rows at a time (default on CPU TORCH_EAGER_CHUNK or TORCH_COMPILE_CHUNK, on a GPU GPU_CHUNK).

    ``graphs`` (CUDA): the whole call (noise, prior, decoder) is captured once per batch size as
    a CUDA graph and replayed, the strongest torch baseline for small batches (no per-kernel launch
    cost); noise then comes from torch's default CUDA generator, which graphs support."""
    if graphs and device != "cuda":
        raise ValueError("CUDA graphs need device='cuda'")
    torch.set_num_threads(threads)
    torch.backends.cuda.matmul.allow_tf32 = False  # float32 as the SDK's CUDA engines run it (use_tf32=0)
    torch.backends.cudnn.allow_tf32 = False
    module, config = torch_generative_path(model)
    module = module.to(device)
    run = torch.compile(module) if compiled else module
    # The same work as the SDK: the artifact's whole mixture prior at its (per-class) temperature,
    # decoded in chunks, output copied to host numpy.
    prior = config.prior
    means = torch.from_numpy(prior.means).float().to(device)                # (K, M, D)
    scales = torch.from_numpy(prior.scales).float().to(device)              # (K, M, D) or (K, M, D, D)
    cdf = torch.from_numpy(prior.cdf).float().to(device)                    # (K, M)
    temps = torch.as_tensor(np.broadcast_to(config.sampling_temperature(None), (config.num_classes,)).copy(),
                            dtype=torch.float32, device=device)             # (K,)
    eye = torch.eye(config.num_classes, device=device)
    generator = torch.Generator(device=device).manual_seed(0)
    if chunk is None:
        chunk = GPU_CHUNK if device != "cpu" else TORCH_COMPILE_CHUNK if compiled else TORCH_EAGER_CHUNK

    def decode(y: Any, noise: Any) -> Any:
        """y (B,) labels -> (B, C, H, W) samples, drawing with ``noise`` (a torch.Generator or None)."""
        eps = torch.randn((y.shape[0], config.latent_dim, 1), generator=noise, device=device)
        u = torch.rand((y.shape[0], 1), generator=noise, device=device)
        comp = (u >= cdf[y]).sum(1).clamp(max=prior.num_components - 1)          # (B,)
        spread = scales[y, comp] * eps[:, :, 0] if prior.diagonal else (scales[y, comp] @ eps)[:, :, 0]  # (B, D)
        z = means[y, comp] + temps[y, None] * spread                              # (B, D)
        return run(z, eye[y])

    def make_graph(batch: int) -> Callable[[], object]:
        labels = torch.arange(batch, device=device) % config.num_classes
        torch.cuda.manual_seed(0)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.inference_mode(), torch.cuda.stream(side):
            for _ in range(3):  # warm-up outside capture (cuBLAS/cuDNN workspaces, lazy init)
                decode(labels, None)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(graph):
            out = decode(labels, None)

        def call() -> object:
            graph.replay()
            if to_host:
                return out.cpu().numpy()
            torch.cuda.synchronize()
            return out

        return call

    def make(batch: int) -> Callable[[], object]:
        if graphs:
            return make_graph(batch)
        labels = torch.arange(batch, device=device) % config.num_classes

        def call() -> object:
            with torch.inference_mode():
                parts = []
                for lo in range(0, batch, chunk):
                    out = decode(labels[lo:lo + chunk], generator)
                    parts.append(out.cpu().numpy() if to_host else out)
                if not to_host:
                    torch.cuda.synchronize()
                    return parts
                return parts[0] if len(parts) == 1 else np.concatenate(parts)

        return call

    suffix = f"{'-compiled' if compiled else ''}{'-graphs' if graphs else ''}{'' if to_host else '-device'}"
    return make, [f"torch-{device}{suffix}"]
