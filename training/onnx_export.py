"""The one way this package turns a PyTorch module into ONNX: dynamo export, a dynamic batch axis,
one self-contained file, metadata attached and ``onnx.checker`` passed (full check)."""

from __future__ import annotations

import contextlib
import logging
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

OPSET = 18  # the dynamo exporter's translation library targets opset 18


def export_module(module: nn.Module, example: tuple[torch.Tensor, ...], *, input_names: list[str],
                  output_names: list[str], metadata: dict[str, str] | None = None) -> Any:
    """An ``onnx.ModelProto`` with dim 0 of every input dynamic (one shared ``batch``) and ``metadata``."""
    import inspect

    import onnx

    batch = torch.export.Dim("batch")
    arguments = list(inspect.signature(module.forward).parameters)[:len(example)]
    with tempfile.TemporaryDirectory() as folder, quiet_exporter():
        raw = Path(folder) / "model.onnx"
        torch.onnx.export(module, example, raw, dynamo=True, external_data=False, opset_version=OPSET,
                          input_names=input_names, output_names=output_names,
                          dynamic_shapes={name: {0: batch} for name in arguments}, verbose=False)
        proto = onnx.load(raw)
    onnx.helper.set_model_props(proto, metadata or {})
    proto.producer_name = "cvae-sdk"
    onnx.checker.check_model(proto, full_check=True)
    return proto


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
    """Hide the exporter's chatter (missing torchvision ops, deprecations) that is not ours to fix."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "onnxscript")]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)
