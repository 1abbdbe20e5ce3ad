"""The training steps' arithmetic: float32, or bfloat16 mixed precision through ``torch.autocast``, and the
optimiser that applies it.

Under mixed precision the convolutions and matrix products run in bfloat16 with float32
accumulation, while the weights, the optimiser state and every loss stay float32: ``CVAE.encode`` and
``CVAE.decode_logits`` return float32 (and ``CVAE.forward`` casts the prior's outputs), and the
adversarial phase casts its discriminator's logits. Validation, the label
checks, the aggregate-posterior fit and export always run in float32.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

import torch


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively: a CPU with AVX512-BF16 or AMX tiles (CUDA is not
    planned for bfloat16 here: ``--precision auto`` keeps float32 on it)."""
    if device.type != "cpu":
        return False
    probes = (getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None))
    return any(bool(probe()) for probe in probes if probe is not None)


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager[object]:
    """The context the training steps' forward passes run in: bfloat16 autocast for "bf16", else nothing."""
    if precision != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def adam(params: Iterable[torch.nn.Parameter], lr: float,
         betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.Adam:
    """Adam with its fused kernel: one pass over each parameter for the whole update, where the default loop runs
    a dozen elementwise ops, each a pass of its own. The same algorithm, rounded differently: on 2 CPU cores a
    whole float32 step took 0.864-0.892 of the default's time, from 28x28 grey to 64x64 colour images
    (benchmarks/results/optimizer_step.json). A checkpoint keeps the choice, so a run resumes with the update it
    started with."""
    return torch.optim.Adam(params, lr=lr, betas=betas, fused=True)
