"""A second, minimal cvae-sdk training backend: a linear-Gaussian CVAE fitted by EM, numpy only.

Model: z ~ N(0, I), x | z, y ~ N(W z + m_y, sigma^2 I), with m_y the class mean of the training
images. This is probabilistic PCA of the class-centred images (Tipping & Bishop, 1999): each epoch
is one EM step, the posterior is exact, so the validation "ELBO" is the exact log-likelihood.

It knows nothing of PyTorch. It meets the backend contract (``train`` -> run folder with
checkpoints and a ``metrics.jsonl`` holding ``val_elbo`` per epoch; ``export`` -> an ONNX artifact)
and registers through the ``cvae_sdk.training_backends`` entry point, so ``cvae-sdk train
--backend minimal`` and ``Generator`` serve it like the built-in one.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from cvae_sdk.artifact import INPUT_Y, INPUT_Z, METADATA_KEY, OUTPUT, ArtifactConfig
from cvae_sdk.atomic import atomic_path
from cvae_sdk.backends import TrainConfig, TrainResult
from cvae_sdk.data import open_dataset
from cvae_sdk.wrap import standard_normal_prior

SIGMA2_FLOOR = 1e-3  # pixels that never vary (image corners) would otherwise drive sigma^2 to 0


class LinearBackend:
    name = "minimal"

    def train(self, config: TrainConfig, *, resume: bool = False, progress: bool = True) -> TrainResult:
        run = Path(config.out)
        if (run / "last.npz").exists() and not resume:
            raise ValueError(f"{run} already holds a run; pass --resume or choose a new --out")
        data = open_dataset(config.data)
        images = data.train.images.reshape(len(data.train), -1).astype(np.float64)  # (N, P)
        labels = data.train.labels
        order = np.random.default_rng(config.seed).permutation(len(labels))
        n_val = max(1, round(config.val_fraction * len(labels)))
        val, train = order[:n_val], order[n_val:]
        means = np.stack([images[train][labels[train] == k].mean(0) for k in range(data.num_classes)])  # (K, P)
        centred = images[train] - means[labels[train]]
        cov = centred.T @ centred / len(train)  # (P, P)
        state = _load(run / "last.npz") if resume else _init(config, images.shape[1], data.train.image_shape[0])
        history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()] if resume else []
        run.mkdir(parents=True, exist_ok=True)
        while state["epoch"] < config.epochs:
            state["weight"], state["sigma2"] = _em_step(cov, state["weight"], float(state["sigma2"]))
            state["epoch"] += 1
            val_ll = _log_likelihood(images[val] - means[labels[val]], state["weight"], float(state["sigma2"]))
            history.append({"epoch": state["epoch"], "val_elbo": val_ll, "sigma2": float(state["sigma2"])})
            state.update(means=means, image_shape=np.array(data.train.image_shape),
                         class_names=np.array(data.class_names), config=json.dumps(config.to_dict()))
            _save(state, run / "last.npz")
            if val_ll >= max(r["val_elbo"] for r in history):
                _save(state, run / "best.npz")
            _write_text(run / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history))
        return TrainResult(run, run / "best.npz", run / "last.npz", int(state["epoch"]),
                           max(r["val_elbo"] for r in history), history)

    def export(self, source: Path, out: Path, **options: Any) -> Path:
        state = _load(Path(source) / "best.npz" if Path(source).is_dir() else Path(source))
        weight, means = state["weight"].astype(np.float32), state["means"].astype(np.float32)  # (P, D), (K, P)
        shape = [int(s) for s in state["image_shape"]]
        names = [str(n) for n in state["class_names"]]
        k, d = means.shape[0], weight.shape[1]
        config = ArtifactConfig(num_classes=k, class_names=tuple(names), latent_dim=d, sample_shape=tuple(shape),
                                prior=standard_normal_prior(k, d),
                                default_temperature=_temperature(options.get("temperature")),
                                train_config=json.loads(str(state["config"])), producer="cvae-minimal-backend")
        _write_bytes(Path(out), _graph(weight, means, shape, config).SerializeToString())
        return Path(out)


def _init(config: TrainConfig, pixels: int, channels: int) -> dict[str, Any]:
    rng = np.random.default_rng(config.seed)
    return {"weight": rng.normal(0.0, 0.1, (pixels, config.planned_latent_dim(channels))), "sigma2": np.float64(1.0),
            "epoch": 0}


def _em_step(cov: np.ndarray, weight: np.ndarray, sigma2: float) -> tuple[np.ndarray, float]:
    """One EM step of probabilistic PCA on the sample covariance ``cov`` (P, P)."""
    d = weight.shape[1]
    m_inv = np.linalg.inv(weight.T @ weight + sigma2 * np.eye(d))  # (D, D)
    sw = cov @ weight                                               # (P, D)
    new_weight = sw @ np.linalg.inv(sigma2 * np.eye(d) + m_inv @ weight.T @ sw)
    new_sigma2 = float(np.trace(cov - sw @ m_inv @ new_weight.T)) / cov.shape[0]
    return new_weight, max(new_sigma2, SIGMA2_FLOOR)


def _log_likelihood(centred: np.ndarray, weight: np.ndarray, sigma2: float) -> float:
    """Mean log N(x; m_y, W W^T + sigma^2 I) in nats, exact."""
    p = centred.shape[1]
    cov = weight @ weight.T + sigma2 * np.eye(p)
    _, logdet = np.linalg.slogdet(cov)
    mahalanobis = np.einsum("np,np->n", centred @ np.linalg.inv(cov), centred)
    return float(np.mean(-0.5 * (p * math.log(2 * math.pi) + logdet + mahalanobis)))


def _graph(weight: np.ndarray, means: np.ndarray, shape: list[int], config: ArtifactConfig) -> Any:
    """samples = Reshape(Clip(z W^T + y M, 0, 1)): the contract's z, y -> samples."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("MatMul", [INPUT_Z, "weight_t"], ["style"]),
             helper.make_node("MatMul", [INPUT_Y, "class_means"], ["centre"]),
             helper.make_node("Add", ["style", "centre"], ["mean"]),
             helper.make_node("Clip", ["mean", "zero", "one"], ["pixels"]),
             helper.make_node("Reshape", ["pixels", "shape"], [OUTPUT])]
    inits = [numpy_helper.from_array(np.ascontiguousarray(weight.T), "weight_t"),
             numpy_helper.from_array(means, "class_means"),
             numpy_helper.from_array(np.array(0, np.float32), "zero"),
             numpy_helper.from_array(np.array(1, np.float32), "one"),
             numpy_helper.from_array(np.array([-1, *shape], np.int64), "shape")]
    graph = helper.make_graph(
        nodes, "linear_cvae_decoder",
        [helper.make_tensor_value_info(INPUT_Z, TensorProto.FLOAT, ["N", config.latent_dim]),
         helper.make_tensor_value_info(INPUT_Y, TensorProto.FLOAT, ["N", config.num_classes])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["N", *shape])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="cvae-minimal")
    helper.set_model_props(model, {METADATA_KEY: config.to_json()})
    return model


def _save(state: dict[str, Any], path: Path) -> None:
    with atomic_path(path) as tmp, tmp.open("wb") as handle:
        np.savez(handle, **state)


def _load(path: Path) -> dict[str, Any]:
    with np.load(path, allow_pickle=False) as archive:
        state = {key: archive[key] for key in archive.files}
    state["epoch"] = int(state["epoch"])
    return state


def _write_text(path: Path, text: str) -> None:
    _write_bytes(path, text.encode())


def _write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def _temperature(requested: object) -> float:
    """The export option: None means the default, 1.0."""
    return 1.0 if requested is None else float(requested)  # type: ignore[arg-type]
