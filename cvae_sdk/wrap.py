"""Wrap a decoder trained elsewhere (Keras, JAX, another PyTorch codebase) as a cvae-sdk artifact.

The decoder must map a latent z (N, D) and a one-hot label y (N, K), both float32, to pixel means
(or logits, with ``logits=True``) of shape (N, C, H, W) or flat (N, C*H*W). Wrapping renames the
inputs and output to the contract's ``z``, ``y``, ``samples``, reshapes a flat output, makes the
batch axis dynamic, stores the metadata with a N(0, I) prior per label, and runs
:func:`cvae_sdk.validate.validate_artifact` before the file appears. Needs the ``onnx`` package.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cvae_sdk.artifact import (
    INPUT_Y,
    INPUT_Z,
    METADATA_KEY,
    OUTPUT,
    ArtifactConfig,
    ArtifactError,
    Prior,
    write_metadata,
)
from cvae_sdk.atomic import atomic_path
from cvae_sdk.validate import validate_artifact

BATCH_AXIS = "N"


def standard_normal_prior(num_classes: int, latent_dim: int) -> Prior:
    """N(0, I) for every label: what a CVAE trained with a fixed prior samples from."""
    return Prior(np.ones((num_classes, 1)), np.zeros((num_classes, 1, latent_dim)),
                 np.broadcast_to(np.eye(latent_dim), (num_classes, 1, latent_dim, latent_dim)).copy(), "standard")


def wrap_decoder(source: str | Path, out: str | Path, *, class_names: Sequence[str],
                 sample_shape: Sequence[int], z_input: str | None = None, y_input: str | None = None,
                 output: str | None = None, logits: bool = False, temperature: float = 1.0) -> Path:
    """Write ``out``: the decoder in ``source`` under the artifact contract, or raise and write nothing."""
    try:
        import onnx
    except ImportError as err:
        raise ImportError("cvae-sdk wrap edits ONNX graphs and needs the onnx package: "
                          "pip install 'cvae-sdk[wrap]'") from err
    shape = tuple(int(s) for s in sample_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"sample_shape must be C,H,W of positive ints, got {list(sample_shape)}")
    names = [str(n) for n in class_names]
    if len(names) < 1 or len(set(names)) != len(names):
        raise ValueError(f"class names must be distinct and at least one, got {names}")
    source = Path(source)
    if not source.is_file():
        raise ValueError(f"decoder file {str(source)!r} does not exist")
    try:
        model = onnx.load(str(source))
    except Exception as err:  # protobuf raises its own DecodeError for a corrupt or foreign file
        raise ValueError(f"{source} is not a readable ONNX model ({type(err).__name__}); export the decoder "
                         "to ONNX again (tf2onnx, torch.onnx.export)") from None
    if any(prop.key == METADATA_KEY for prop in model.metadata_props):
        raise ValueError(f"{source} is already a cvae-sdk artifact; wrapping would replace its prior with "
                         "N(0, I). Use it as it is (cvae-sdk validate checks it)")
    graph = model.graph
    z_name, y_name = _pick_inputs(graph, len(names), z_input, y_input)
    out_name = _pick_output(graph, output)
    latent_dim = _width(graph, z_name)
    _rename(graph, {z_name: INPUT_Z, y_name: INPUT_Y, out_name: "decoder_output"})
    tail = "decoder_output"
    if logits:
        graph.node.append(onnx.helper.make_node("Sigmoid", [tail], ["decoder_probs"]))
        tail = "decoder_probs"
    graph.initializer.append(onnx.numpy_helper.from_array(np.array([-1, *shape], dtype=np.int64), "samples_shape"))
    graph.node.append(onnx.helper.make_node("Reshape", [tail, "samples_shape"], [OUTPUT]))
    del graph.output[:]
    graph.output.append(onnx.helper.make_tensor_value_info(OUTPUT, onnx.TensorProto.FLOAT, [BATCH_AXIS, *shape]))
    for value in graph.input:
        if value.name in (INPUT_Z, INPUT_Y):
            value.type.tensor_type.shape.dim[0].dim_param = BATCH_AXIS
    config = ArtifactConfig(num_classes=len(names), class_names=tuple(names), latent_dim=latent_dim,
                            sample_shape=shape, prior=standard_normal_prior(len(names), latent_dim),
                            default_temperature=float(temperature), producer="cvae-sdk wrap",
                            metrics={"wrapped_from": Path(source).name})
    write_metadata(model, config)
    out = Path(out)
    with atomic_path(out) as tmp:
        onnx.save(model, str(tmp))
        report = validate_artifact(tmp)
        if not report.ok:
            failed = report.checks[-1]
            raise ArtifactError(f"the wrapped decoder fails the contract check {failed.name!r}: {failed.detail}")
    return out


def _pick_inputs(graph: Any, num_classes: int, z_input: str | None, y_input: str | None) -> tuple[str, str]:
    initializers = {t.name for t in graph.initializer}
    inputs = [v.name for v in graph.input if v.name not in initializers]
    if len(inputs) != 2:
        raise ValueError(f"a decoder needs exactly two inputs (z and a one-hot y), this graph has {inputs}")
    for given in (z_input, y_input):
        if given is not None and given not in inputs:
            raise ValueError(f"input {given!r} is not in the graph; its inputs are {inputs}")
    if z_input is not None or y_input is not None:
        z = z_input or next(n for n in inputs if n != y_input)
        y = y_input or next(n for n in inputs if n != z)
        return z, y
    widths = {name: _width(graph, name) for name in inputs}
    label_like = [name for name in inputs if widths[name] == num_classes]
    if len(label_like) != 1:
        raise ValueError(f"cannot tell z from y by width (inputs {widths}, {num_classes} classes); "
                         "pass --z-input and --y-input")
    return next(n for n in inputs if n != label_like[0]), label_like[0]


def _pick_output(graph: Any, output: str | None) -> str:
    outputs = [v.name for v in graph.output]
    if output is None:
        if len(outputs) != 1:
            raise ValueError(f"the graph has outputs {outputs}; pass --output to choose the pixels")
        return str(outputs[0])
    if output not in outputs:
        raise ValueError(f"output {output!r} is not in the graph; its outputs are {outputs}")
    return output


def _width(graph: Any, name: str) -> int:
    value = next(v for v in graph.input if v.name == name)
    dims = value.type.tensor_type.shape.dim
    if len(dims) != 2 or not dims[1].HasField("dim_value"):
        raise ValueError(f"input {name!r} must be (N, width) with a fixed width, got "
                         f"{[d.dim_value or d.dim_param for d in dims]}")
    return int(dims[1].dim_value)


def _rename(graph: Any, names: dict[str, str]) -> None:
    """Rename tensors everywhere they occur: graph inputs/outputs and node inputs/outputs."""
    used = {n for node in graph.node for n in [*node.input, *node.output]} | {t.name for t in graph.initializer}
    taken = sorted((set(names.values()) | {OUTPUT, "samples_shape"}) & (used - set(names)))
    if taken:
        raise ValueError(f"the graph already uses the tensor name(s) {taken} that the contract needs; "
                         "rename them in the source model first")
    for value in [*graph.input, *graph.output, *graph.value_info]:
        value.name = names.get(value.name, value.name)
    for node in graph.node:
        node.input[:] = [names.get(n, n) for n in node.input]
        node.output[:] = [names.get(n, n) for n in node.output]
