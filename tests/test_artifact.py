"""Artifact metadata is parsed as JSON and validated against the schema before use."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from cvae_sdk import ArtifactError, Generator
from cvae_sdk.artifact import METADATA_KEY, pack, parse_metadata


def _doc(model: Path) -> dict:  # type: ignore[type-arg]
    proto = onnx.load(str(model))
    return json.loads({p.key: p.value for p in proto.metadata_props}[METADATA_KEY])


def _rewrite(model: Path, out: Path, doc: dict | None, extra: dict[str, str] | None = None) -> Path:  # type: ignore[type-arg]
    proto = onnx.load(str(model))
    del proto.metadata_props[:]
    props = dict(extra or {})
    if doc is not None:
        props[METADATA_KEY] = json.dumps(doc)
    onnx.helper.set_model_props(proto, props)
    onnx.save(proto, str(out))
    return out


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d.update(format_version=99), "newer than this cvae-sdk reads"),
    (lambda d: d.update(num_classes=4), "class_names must be 4 distinct strings"),
    (lambda d: d.update(latent_dim=5), "prior means has shape"),
    (lambda d: d.pop("prior"), "lacks required key"),
    (lambda d: d.update(sample_shape=[1, 12]), "sample_shape must be"),
    (lambda d: d["prior"].update(weights=[[0.5] * len(d["prior"]["weights"][0])] * 3), "sum to 1"),
    (lambda d: d["prior"]["scale_diag"].update(shape=[3, 1, 4]), "scale_diag is not a packed float16 array"),
    (lambda d: d["prior"]["means"].update(base64="not base64!"), "means is not a packed float16 array"),
    (lambda d: d["prior"]["means"].update(dtype="float64"), "dtype must be float16"),
    (lambda d: d["prior"].update(scale_tril=[[[[-1.0]]]], scale_diag=None) or d["prior"].pop("scale_diag"),
     "prior scale_tril has shape"),
    (lambda d: d["prior"]["weights"][0].__setitem__(0, float("nan")), "weights holds NaN or inf"),
    (lambda d: d["prior"].update(means=pack(np.full((3, len(d["prior"]["weights"][0]), 4), np.inf))),
     "means holds NaN or inf"),
    (lambda d: d.update(class_names="abc"), "has type str"),
    (lambda d: d.update(output_contrast=-1.0), "output_contrast must be a finite number > 0"),
    (lambda d: d.update(output_contrast="sharp"), "has type str"),
])
def test_invalid_metadata_is_named(tiny_model: Path, tmp_path: Path, change, message: str) -> None:  # type: ignore[no-untyped-def]
    doc = _doc(tiny_model)
    change(doc)
    bad = _rewrite(tiny_model, tmp_path / "bad.onnx", doc)
    with pytest.raises(ArtifactError, match=message):
        Generator.from_pretrained(bad)


def test_metadata_inconsistent_with_graph(tiny_model: Path, tmp_path: Path) -> None:
    doc = _doc(tiny_model)
    doc["sample_shape"] = [1, 10, 10]
    with pytest.raises(ArtifactError, match="disagrees with sample_shape"):
        Generator.from_pretrained(_rewrite(tiny_model, tmp_path / "shape.onnx", doc))


def test_foreign_onnx_is_not_an_artifact(tiny_model: Path, tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="not a cvae-sdk artifact"):
        Generator.from_pretrained(_rewrite(tiny_model, tmp_path / "plain.onnx", None, {"author": "someone"}))


def test_non_json_metadata() -> None:
    with pytest.raises(ArtifactError, match="not valid JSON"):
        parse_metadata({METADATA_KEY: "{not json"})


def test_full_covariance_prior_is_validated(tiny_model: Path, tmp_path: Path) -> None:
    """Fitted mixtures (``--aggregate-components M``) carry Cholesky factors as nested lists: checked too."""
    from cvae_sdk.artifact import Prior

    prior = Generator.from_pretrained(tiny_model).config.prior
    full = Prior(prior.weights, prior.means, np.einsum("kmd,de->kmde", prior.scales, np.eye(4)), "aggregate")
    doc = _doc(tiny_model)
    doc["prior"] = full.to_json()
    assert not Generator.from_pretrained(_rewrite(tiny_model, tmp_path / "full.onnx", doc)).config.prior.diagonal
    doc["prior"]["scale_tril"][0][0][0][0] = -1.0
    with pytest.raises(ArtifactError, match="positive diagonal"):
        Generator.from_pretrained(_rewrite(tiny_model, tmp_path / "bad.onnx", doc))


def test_diagonal_prior_draws_what_its_full_covariance_form_draws() -> None:
    """The same mixture as standard deviations (K, M, D) or as diagonal Cholesky factors (K, M, D, D)."""
    import numpy as np

    from cvae_sdk.artifact import Prior, stored
    from cvae_sdk.latents import transform

    rng = np.random.default_rng(0)
    weights = rng.dirichlet(np.ones(5), size=3)                             # (K, M)
    means, scales = rng.normal(size=(3, 5, 4)), rng.uniform(0.1, 2.0, size=(3, 5, 4))
    diagonal = Prior(weights, means, scales, "aggregate")
    full = Prior(weights, means, np.einsum("kmd,de->kmde", scales, np.eye(4)), "aggregate")
    labels, eps, u = rng.integers(0, 3, 64), rng.normal(size=(64, 4)), rng.uniform(size=64)
    assert diagonal.diagonal and not full.diagonal
    np.testing.assert_array_equal(transform(diagonal, labels, eps, u, 0.7), transform(full, labels, eps, u, 0.7))
    back = parse_metadata({METADATA_KEY: json.dumps({
        "format_version": 3, "num_classes": 3, "class_names": ["a", "b", "c"], "latent_dim": 4,
        "sample_shape": [1, 2, 2], "prior": diagonal.to_json(), "default_temperature": 1.0})}).prior
    # packed as float16: they read back as exactly the values stored() gives
    np.testing.assert_array_equal(back.scales, stored(scales))
    np.testing.assert_array_equal(back.means, stored(means))
    negative = Prior(weights, means, -scales, "aggregate")
    with pytest.raises(ArtifactError, match="scale_diag must be positive"):
        parse_metadata({METADATA_KEY: json.dumps({
            "format_version": 3, "num_classes": 3, "class_names": ["a", "b", "c"], "latent_dim": 4,
            "sample_shape": [1, 2, 2], "prior": negative.to_json(), "default_temperature": 1.0})})
