"""The training steps' arithmetic: float32, or bfloat16 mixed precision through ``torch.autocast``.

Under mixed precision the convolutions and matrix products run in bfloat16 with float32
accumulation, while the weights, the optimiser state and every loss stay float32: ``CVAE.encode`` and
``CVAE.decode_logits`` return float32 (and ``CVAE.forward`` casts the prior's outputs), and the
adversarial phase casts its discriminator's logits. Validation, the label
checks, the aggregate-posterior fit and export always run in float32.
"""

from __future__ import annotations

import contextlib

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
