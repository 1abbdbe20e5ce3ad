"""Builds the small ONNX graphs the runtime ships in ``cvae_sdk/kernels/`` (the runtime has no onnx).

    python -m cvae_sdk_training.kernels        # rewrites cvae_sdk/kernels/*.onnx

A test rebuilds them and compares bytes, so the shipped files cannot drift from this code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .onnx_export import OPSET

KERNELS = Path(__file__).resolve().parent.parent / "cvae_sdk" / "kernels"


def take_rows_model(uint8: bool) -> Any:
    """The first ``rows`` rows of a padded bucket, as float32 or as uint8(samples * 255 + 0.5).

    Run where the samples are, with the output bound to host memory, this copies exactly the rows
    a request asked for, once, in its final dtype (a quarter of the bytes for uint8).
    """
    from onnx import TensorProto, helper, numpy_helper

    dims, out_dims = ["B", "C", "H", "W"], ["N", "C", "H", "W"]
    nodes = [helper.make_node("Slice", ["samples", "zero", "rows", "zero"], ["taken" if uint8 else "pixels"])]
    if uint8:
        nodes += [helper.make_node("Mul", ["taken", "scale"], ["scaled"]),
                  helper.make_node("Add", ["scaled", "half"], ["rounded"]),
                  helper.make_node("Cast", ["rounded"], ["pixels"], to=TensorProto.UINT8)]
    graph = helper.make_graph(
        nodes, "take_rows_uint8" if uint8 else "take_rows",
        [helper.make_tensor_value_info("samples", TensorProto.FLOAT, dims),
         helper.make_tensor_value_info("rows", TensorProto.INT64, [1])],
        [helper.make_tensor_value_info("pixels", TensorProto.UINT8 if uint8 else TensorProto.FLOAT, out_dims)],
        [numpy_helper.from_array(np.array([0], np.int64), "zero"),
         numpy_helper.from_array(np.array(255.0, np.float32), "scale"),
         numpy_helper.from_array(np.array(0.5, np.float32), "half")][:1 + 2 * uint8])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="cvae-sdk")
    model.ir_version = 8  # readable by onnxruntime releases back to 1.14
    return model


def build() -> dict[str, bytes]:
    return {"take_rows.onnx": take_rows_model(uint8=False).SerializeToString(),
            "take_rows_uint8.onnx": take_rows_model(uint8=True).SerializeToString()}


if __name__ == "__main__":
    KERNELS.mkdir(exist_ok=True)
    for name, data in build().items():
        (KERNELS / name).write_bytes(data)
        print(KERNELS / name, len(data), "bytes")
