"""Artifact metadata is parsed as JSON and validated against the schema before use."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from cvae_sdk import ArtifactError, Generator
from cvae_sdk.artifact import METADATA_KEY, parse_metadata


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
    (lambda d: d["prior"]["scale_tril"][0][0][0].__setitem__(0, -1.0), "positive diagonal"),
    (lambda d: d["prior"]["means"][0][0].__setitem__(0, float("nan")), "NaN or inf"),
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
