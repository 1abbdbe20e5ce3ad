"""Builds the small ONNX graphs the runtime ships in ``cvae_sdk/kernels/`` (the runtime has no onnx).

    python -m training.kernels        # rewrites cvae_sdk/kernels/*.onnx

A test rebuilds them and compares bytes, so the shipped files cannot drift from this code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

KERNELS = Path(__file__).resolve().parent.parent / "cvae_sdk" / "kernels"
OPSET = 18


def to_uint8_model() -> Any:
    """pixels = uint8(samples * 255 + 0.5): the runtime's uint8 conversion, run where the samples are."""
    from onnx import TensorProto, helper, numpy_helper

    dims = ["N", "C", "H", "W"]
    graph = helper.make_graph(
        [helper.make_node("Mul", ["samples", "scale"], ["scaled"]),
         helper.make_node("Add", ["scaled", "half"], ["rounded"]),
         helper.make_node("Cast", ["rounded"], ["pixels"], to=TensorProto.UINT8)],
        "to_uint8",
        [helper.make_tensor_value_info("samples", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("pixels", TensorProto.UINT8, dims)],
        [numpy_helper.from_array(np.array(255.0, np.float32), "scale"),
         numpy_helper.from_array(np.array(0.5, np.float32), "half")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="cvae-sdk")
    model.ir_version = 8  # readable by onnxruntime releases back to 1.14
    return model


def build() -> dict[str, bytes]:
    return {"to_uint8.onnx": to_uint8_model().SerializeToString()}


if __name__ == "__main__":
    KERNELS.mkdir(exist_ok=True)
    for name, data in build().items():
        (KERNELS / name).write_bytes(data)
        print(KERNELS / name, len(data), "bytes")
