"""The whole sampler as one ONNX graph, for clients without Python (C++, C#, JavaScript onnxruntime).

An artifact maps (z, y) to images and leaves p(z|y) to the SDK. The sampler graph adds the prior
in front of the decoder, as ONNX operators over the artifact's own mixture parameters:

    labels int64 (N,), eps float32 (N, D) ~ N(0, I), u float32 (N,) ~ U[0, 1), temperature float32 (N,)
      -> component  = min(#{m : u >= cdf[label, m]}, M - 1)
      -> z          = means[label, component] + temperature * scale_tril[label, component] @ eps
                      (or scale_diag[label, component] * eps for a diagonal mixture)
      -> samples    = decoder(z, one_hot(label))                      float32 (N, C, H, W)

the transform ``cvae_sdk.latents`` applies in numpy (in float32 here, so samples agree with
``Generator.generate`` on the same noise to about 1e-6 on the shipped model; :func:`write_sampler`
refuses a graph that differs by more than ``MAX_DIFFERENCE``). Each row's temperature is the caller's:
the artifact's ``class_temperatures`` (or ``default_temperature``) sit in the metadata, copied to
the key ``cvae_sdk_sampler``. The file is not an artifact (its inputs differ), and ``Generator``
refuses it. Needs the ``onnx`` package (``pip install 'cvae-sdk[wrap]'``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cvae_sdk.artifact import INPUT_Y, INPUT_Z, METADATA_KEY, OUTPUT, read_metadata
from cvae_sdk.atomic import atomic_path

SAMPLER_KEY = "cvae_sdk_sampler"
MAX_DIFFERENCE = 1e-4  # largest pixel difference from Generator.generate a written sampler may show
LABELS, EPS, UNIFORM, TEMPERATURE = "labels", "eps", "u", "temperature"


def build_sampler(artifact: str | Path) -> Any:
    """The sampler graph (an ``onnx.ModelProto``) of the artifact at ``artifact``."""
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError as err:
        raise ImportError("building a sampler graph needs the onnx package: pip install 'cvae-sdk[wrap]'") from err
    model = onnx.load(str(artifact))
    config = read_metadata(model, str(artifact))
    prior = config.prior
    k, m, d = prior.means.shape
    graph = model.graph
    for node in graph.node:  # the decoder now reads the z and one-hot y computed in front of it
        node.input[:] = [{INPUT_Z: "prior_z", INPUT_Y: "prior_y"}.get(name, name) for name in node.input]

    def const(name: str, array: np.ndarray) -> None:
        graph.initializer.append(numpy_helper.from_array(array, name))

    const("prior_cdf", prior.cdf.astype(np.float32))                                  # (K, M)
    const("prior_means", prior.means.reshape(k * m, d).astype(np.float32))           # (K*M, D)
    scale_shape = (k * m, d) if prior.diagonal else (k * m, d, d)
    const("prior_scales", prior.scales.reshape(scale_shape).astype(np.float32))    # (K*M, D) or (K*M, D, D)
    const("prior_eye", np.eye(k, dtype=np.float32))                                   # (K, K)
    const("prior_m", np.array(m, dtype=np.int64))
    const("prior_last", np.array(m - 1, dtype=np.int64))
    const("axis_1", np.array([1], dtype=np.int64))
    if not prior.diagonal:
        const("axis_2", np.array([2], dtype=np.int64))
    prior_nodes = [
        helper.make_node("Gather", ["prior_cdf", LABELS], ["cdf_rows"], axis=0),            # (N, M)
        helper.make_node("Unsqueeze", [UNIFORM, "axis_1"], ["u_col"]),                      # (N, 1)
        helper.make_node("GreaterOrEqual", ["u_col", "cdf_rows"], ["passed"]),              # (N, M)
        helper.make_node("Cast", ["passed"], ["passed_int"], to=TensorProto.INT64),
        helper.make_node("ReduceSum", ["passed_int", "axis_1"], ["count"], keepdims=0),     # (N,)
        helper.make_node("Min", ["count", "prior_last"], ["component"]),                    # (N,)
        helper.make_node("Mul", [LABELS, "prior_m"], ["label_base"]),
        helper.make_node("Add", ["label_base", "component"], ["row"]),                      # (N,) into K*M
        helper.make_node("Gather", ["prior_means", "row"], ["mean"], axis=0),               # (N, D)
        helper.make_node("Gather", ["prior_scales", "row"], ["scales"], axis=0),            # (N, D) or (N, D, D)
        *spread_nodes(prior.diagonal),                                                      # -> spread (N, D)
        helper.make_node("Unsqueeze", [TEMPERATURE, "axis_1"], ["temperature_col"]),        # (N, 1)
        helper.make_node("Mul", ["spread", "temperature_col"], ["scaled"]),
        helper.make_node("Add", ["mean", "scaled"], ["prior_z"]),                           # (N, D)
        helper.make_node("Gather", ["prior_eye", LABELS], ["prior_y"], axis=0),             # (N, K)
    ]
    nodes = [*prior_nodes, *graph.node]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.input[:]
    graph.input.extend([helper.make_tensor_value_info(LABELS, TensorProto.INT64, ["N"]),
                        helper.make_tensor_value_info(EPS, TensorProto.FLOAT, ["N", d]),
                        helper.make_tensor_value_info(UNIFORM, TensorProto.FLOAT, ["N"]),
                        helper.make_tensor_value_info(TEMPERATURE, TensorProto.FLOAT, ["N"])])
    del graph.value_info[:]
    entry = next(p for p in model.metadata_props if p.key == METADATA_KEY)
    entry.key = SAMPLER_KEY  # the config travels with the graph, but the file is no artifact
    onnx.checker.check_model(model, full_check=True)
    return model


def spread_nodes(diagonal: bool) -> list[Any]:
    """The nodes from ``scales`` (a row's scale: (N, D) standard deviations, or (N, D, D) Cholesky factors) and
    ``eps`` (N, D) to ``spread`` (N, D): an elementwise product, or a batched matrix product."""
    from onnx import helper

    if diagonal:
        return [helper.make_node("Mul", ["scales", EPS], ["spread"])]                      # (N, D)
    return [helper.make_node("Unsqueeze", [EPS, "axis_2"], ["eps_col"]),                    # (N, D, 1)
            helper.make_node("MatMul", ["scales", "eps_col"], ["spread_col"]),              # (N, D, 1)
            helper.make_node("Squeeze", ["spread_col", "axis_2"], ["spread"])]              # (N, D)


def write_sampler(artifact: str | Path, out: str | Path) -> Path:
    """Write the sampler graph of ``artifact`` to ``out`` (atomically), after checking it runs and matches."""
    import onnxruntime as ort

    from cvae_sdk.generator import Generator
    from cvae_sdk.latents import prior_noise, request_key, row_temperatures

    gen = Generator.from_pretrained(artifact, providers=["CPUExecutionProvider"])  # a readable artifact, or why not
    data = build_sampler(artifact).SerializeToString()
    config = gen.config
    labels = np.arange(2 * config.num_classes, dtype=np.int64) % config.num_classes
    want = gen.generate(labels, 1, rng=0)
    eps, u = prior_noise(config.prior, request_key(0), 0, labels.shape[0])
    temps = np.broadcast_to(row_temperatures(config.sampling_temperature(None), labels), (labels.shape[0], 1))
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = session.run([OUTPUT], {LABELS: labels, EPS: eps.astype(np.float32),
                                 UNIFORM: (np.zeros(labels.shape[0]) if u is None else u).astype(np.float32),
                                 TEMPERATURE: temps[:, 0].astype(np.float32)})[0]
    worst = float(np.abs(got - want.samples).max())
    if not worst <= MAX_DIFFERENCE:
        raise ValueError(f"the sampler graph disagrees with Generator.generate by {worst:.3g}; nothing was written")
    with atomic_path(out) as tmp:
        tmp.write_bytes(data)
    return Path(out)
