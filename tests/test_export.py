"""Export: the checker, parity, the dynamic batch, metadata round-trip, and nothing written on failure."""

from __future__ import annotations

import json
from pathlib import Path

import cvae_sdk_training.export as export_module
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from cvae_sdk_training.export import ExportCheckError, GenerativePath, export_generator, load_model
from cvae_sdk_training.onnx_export import OPSET

from cvae_sdk.artifact import METADATA_KEY, parse_metadata


def test_file_passes_full_check_and_is_self_contained(tiny_model: Path) -> None:
    onnx.checker.check_model(str(tiny_model), full_check=True)
    assert not list(tiny_model.parent.glob("*.data"))
    proto = onnx.load(str(tiny_model))
    assert proto.opset_import[0].version == OPSET


def test_encoder_is_not_exported(tiny_model: Path) -> None:
    proto = onnx.load(str(tiny_model))
    names = [init.name for init in proto.graph.initializer]
    assert names and not any("encoder" in name for name in names)


def test_batch_axis_is_dynamic(tiny_model: Path) -> None:
    proto = onnx.load(str(tiny_model))
    for value in list(proto.graph.input) + list(proto.graph.output):
        assert value.type.tensor_type.shape.dim[0].dim_param, value.name


@pytest.mark.parametrize("n", [1, 7, 4096])
def test_parity_at_dynamic_batch_sizes(tiny_run: Path, tiny_model: Path, n: int) -> None:
    model, _ = load_model(tiny_run)
    session = ort.InferenceSession(str(tiny_model), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(n)
    z = rng.standard_normal((n, 4)).astype(np.float32) * 3
    y = np.eye(3, dtype=np.float32)[np.arange(n) % 3]
    got = session.run(["samples"], {"z": z, "y": y})[0]
    contrast = parse_metadata(dict(session.get_modelmeta().custom_metadata_map)).output_contrast
    with torch.inference_mode():
        want = GenerativePath(model.decoder, contrast)(torch.from_numpy(z), torch.from_numpy(y)).numpy()
    assert got.shape == (n, 1, 12, 12)
    assert np.abs(got - want).max() <= 1e-5
    # the sub-pixel decoder is written folded: two Convs with only their ReLU between them, the
    # sub-pixel outputs placed by reshapes and transposes, no DepthToSpace
    ops = [node.op_type for node in onnx.load(str(tiny_model)).graph.node]
    convs = [i for i, op in enumerate(ops) if op == "Conv"]
    assert len(convs) == 2 and ops[convs[0] + 1:convs[1]] == ["Relu"] and "DepthToSpace" not in ops
    assert 0.0 <= got.min() and got.max() <= 1.0


def test_a_decoder_of_three_doublings_exports_as_trained(tmp_path: Path) -> None:
    """--doublings 3 on 40x40 colour images: written unfolded (DepthToSpace), equal to the trained decoder."""
    from conftest import make_images, tiny_config
    from cvae_sdk_training.trainer import train

    from cvae_sdk import Generator

    images, labels = make_images(120, (3, 40, 40), 3, 0)
    data = tmp_path / "colour.npz"
    np.savez(data, images=images, labels=labels)
    train(tiny_config(data, tmp_path / "run", epochs=1, doublings=3), progress=False)
    model, _ = load_model(tmp_path / "run")
    assert model.cfg.doublings == 3
    out = tmp_path / "colour.onnx"
    export_generator(tmp_path / "run", out, allow_low_fidelity=True, contrast=1.0)
    ops = [node.op_type for node in onnx.load(str(out)).graph.node]
    assert ops.count("Conv") == 3 and ops.count("DepthToSpace") == 3
    generator = Generator.from_pretrained(out)
    z = np.random.default_rng(0).standard_normal((6, 4)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[np.arange(6) % 3]
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(["samples"], {"z": z, "y": y})[0]
    with torch.inference_mode():
        want = GenerativePath(model.decoder)(torch.from_numpy(z), torch.from_numpy(y)).numpy()
    assert got.shape == (6, 3, 40, 40) and np.abs(got - want).max() <= 1e-5
    assert generator.generate([0, 1, 2], 2, rng=0).samples.shape == (6, 3, 40, 40)


def test_metadata_round_trip(tiny_run: Path, tiny_model: Path) -> None:
    session = ort.InferenceSession(str(tiny_model), providers=["CPUExecutionProvider"])
    props = session.get_modelmeta().custom_metadata_map
    config = parse_metadata(props)
    doc = json.loads(props[METADATA_KEY])
    assert config.num_classes == 3 and config.class_names == ("top", "middle", "bottom")
    assert config.latent_dim == 4 and config.sample_shape == (1, 12, 12)
    # one diagonal Gaussian per training image of the largest class (the others padded at weight 0)
    assert config.prior.source == "aggregate" and config.prior.diagonal
    assert config.prior.scales.shape == config.prior.means.shape and config.prior.means.shape[::2] == (3, 4)
    assert config.format_version == 3 and set(doc["prior"]) >= {"means", "scale_diag"}
    assert doc["train_config"]["latent_dim"] == 4 and doc["model_config"]["arch"] == "conv"
    assert {"torch", "onnx", "cvae-sdk"} <= set(doc["versions"])
    assert len(doc["weights_sha256"]) == 64
    assert "val_elbo" in doc["metrics"]


@pytest.mark.parametrize("prior", ["learned", "standard"])
def test_prior_choices(tiny_run: Path, tmp_path: Path, prior: str) -> None:
    result = export_generator(tiny_run, tmp_path / f"{prior}.onnx", prior=prior, allow_low_fidelity=True)
    assert result.config.prior.source == prior
    if prior == "standard":
        assert np.array_equal(result.config.prior.means, np.zeros((3, 1, 4)))


def test_failed_parity_writes_nothing(tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "never.onnx"
    monkeypatch.setattr(export_module, "PARITY_TOLERANCE", -1.0)  # no real export can pass this gate
    with pytest.raises(ExportCheckError, match="nothing was written"):
        export_generator(tiny_run, target, allow_low_fidelity=True)
    assert list(tmp_path.iterdir()) == []


def test_failed_export_keeps_existing_file(tiny_run: Path, tiny_model: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "kept.onnx"
    target.write_bytes(tiny_model.read_bytes())
    monkeypatch.setattr(export_module, "PARITY_TOLERANCE", -1.0)
    with pytest.raises(ExportCheckError):
        export_generator(tiny_run, target, allow_low_fidelity=True)
    assert target.read_bytes() == tiny_model.read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == ["kept.onnx"]


def test_bad_sources_are_explained(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="holds no best.pt"):
        export_generator(tmp_path, tmp_path / "m.onnx")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable cvae-sdk checkpoint"):
        export_generator(junk, tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="must end in .onnx"):
        export_generator(tmp_path, tmp_path / "m.bin")


@pytest.mark.parametrize("arch", ["dense", "conv", "mlp"])
def test_exported_graph_has_no_concat(tiny_npz: Path, tmp_path: Path, arch: str) -> None:
    """(z, y) enter through two Gemms and an Add: a CUDA Concat of unequal inputs stages its pointer
    table in host memory that a captured graph would replay stale, so no export may hold one."""
    from conftest import tiny_config
    from cvae_sdk_training.trainer import train

    train(tiny_config(tiny_npz, tmp_path / arch, arch=arch, epochs=1, aggregate_components=0), progress=False)
    model = export_generator(tmp_path / arch, tmp_path / f"{arch}.onnx", temperature=1.0,
                             allow_low_fidelity=True)
    ops = [node.op_type for node in onnx.load(str(model.path)).graph.node]
    assert "Concat" not in ops and "Slice" not in ops and ops.count("Gemm") >= 2


@pytest.mark.parametrize(("arch", "upsample"), [("conv", "subpixel"), ("conv", "transpose"), ("mlp", "subpixel"),
                                               ("dense", "subpixel")])
def test_contrast_folds_into_the_last_layer_of_every_decoder(arch: str, upsample: str) -> None:
    """Logits times s, from the weights alone: the graph and its FLOPs stay the same."""
    import copy

    from cvae_sdk_training.contrast import fold_contrast
    from cvae_sdk_training.export import exported_decoder
    from cvae_sdk_training.model import CVAE, ModelConfig

    model = CVAE(ModelConfig(image_shape=(1, 12, 12), num_classes=3, latent_dim=4, arch=arch,  # type: ignore[arg-type]
                             hidden=16, conv_channels=4, upsample=upsample))  # type: ignore[arg-type]
    decoder = exported_decoder(model)
    folded = fold_contrast(copy.deepcopy(decoder), 1.5, 4, 3)
    z, y = torch.randn(5, 4), torch.eye(3)[torch.arange(5) % 3]
    with torch.no_grad():
        torch.testing.assert_close(folded(z, y), 1.5 * decoder(z, y), rtol=1e-5, atol=1e-5)
    assert sum(p.numel() for p in folded.parameters()) == sum(p.numel() for p in decoder.parameters())


def test_export_contrast_is_chosen_or_given_and_samples_follow_it(tiny_run: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cvae_sdk import Generator
    from cvae_sdk.cli import app
    from cvae_sdk.quality import with_contrast

    chosen = export_generator(tiny_run, tmp_path / "chosen.onnx", allow_low_fidelity=True)
    assert chosen.contrast is not None and chosen.config.output_contrast == chosen.contrast.contrast
    assert set(chosen.contrast.frechet) == set(chosen.contrast.fidelity) and 1.0 in chosen.contrast.frechet
    best = min(chosen.contrast.frechet.values())
    assert chosen.contrast.frechet[chosen.config.output_contrast] == best or chosen.contrast.fidelity[
        chosen.config.output_contrast] >= chosen.contrast.fidelity[1.0] - 0.005
    for s in ("1", "1.5"):
        result = CliRunner().invoke(app, ["export", str(tiny_run), "--out", str(tmp_path / f"c{s}.onnx"),
                                          "--contrast", s, "--allow-low-fidelity"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output.strip().splitlines()[-1])["output_contrast"] == float(s)
    plain = Generator.from_pretrained(tmp_path / "c1.onnx").generate([0, 1, 2], 8, rng=3).samples
    sharp = Generator.from_pretrained(tmp_path / "c1.5.onnx").generate([0, 1, 2], 8, rng=3).samples
    np.testing.assert_allclose(sharp, with_contrast(plain, 1.5), atol=2e-4)
    result = CliRunner().invoke(app, ["export", str(tiny_run), "--out", str(tmp_path / "bad.onnx"), "--contrast", "0"])
    assert result.exit_code == 2 and "--contrast must lie in [0.25, 8]" in result.output
    assert not (tmp_path / "bad.onnx").exists()


def test_a_run_that_does_not_draw_its_classes_is_refused_unless_allowed(tiny_run: Path, tmp_path: Path) -> None:
    """The 2-epoch tiny run draws its three classes at chance: export names the problem and the flag."""
    from typer.testing import CliRunner

    from cvae_sdk.cli import app

    result = CliRunner().invoke(app, ["export", str(tiny_run), "--out", str(tmp_path / "m.onnx")])
    assert result.exit_code == 2 and "does not draw its classes yet" in result.output
    assert "Train longer (--resume --epochs)" in result.output  # its 2 epochs were given, not cut for time
    assert "--allow-low-fidelity" in result.output and list(tmp_path.iterdir()) == []
    result = CliRunner().invoke(app, ["export", str(tiny_run), "--out", str(tmp_path / "m.onnx"),
                                      "--allow-low-fidelity"])
    assert result.exit_code == 0 and (tmp_path / "m.onnx").is_file()
