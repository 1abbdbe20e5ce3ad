"""Where the SDK's CUDA time goes, against torch on the same weights, in one run on a GPU machine.

1. One-image ``generate``, step by step (median and p99 µs of many calls): the host draw, the hop to
   the runner's owner thread, the two host-to-device copies, the graph replay, and the copy back
   (the take-rows kernel, float32 and uint8, and a plain ``OrtValue.numpy()`` of the bucket).
2. The decoder alone on device-resident inputs and outputs (no host work), at 64, 4,096 and 65,536
   rows: onnxruntime with each cuDNN algorithm search, with and without a CUDA graph, float32 and
   float16, against the torch rebuild of the same file, eager and CUDA-graphed.
3. onnxruntime's own per-operator profile at 4,096 rows, float32, both searches.
4. The host draw of z (noise and prior transform) at 4,096 and 65,536 rows: one thread and the pool.

    python benchmarks/gpu_profile.py OUT.json [--fp16 FP16.onnx]
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from cvae_sdk import Generator, shipped_model_path
from cvae_sdk.latents import _latents, prior_latents, request_key

sys.path.insert(0, str(Path(__file__).resolve().parent))
from batch1_overhead import timed as batch1_timed  # noqa: E402  (the timer beside this script)

SIZES = (64, 4096, 65536)
SEARCHES = ("HEURISTIC", "EXHAUSTIVE", "DEFAULT")


def timed(call: Callable[[], object], calls: int) -> dict[str, float]:
    """Median and p99 µs of ``calls`` calls after 3 warm-up calls (batch1_overhead's timer)."""
    return batch1_timed(call, calls, warmup=3)


def batch1_steps(model: Path) -> dict[str, Any]:
    gen = Generator.from_pretrained(model, providers=["CUDAExecutionProvider"])
    runner = gen._runner  # a benchmark looks inside: the steps of one call
    assert runner is not None
    gen.generate([3], 1, rng=0)
    gen.generate([3], 1, rng=0, output_type="uint8")
    bucket = runner._bound[1]
    z, y = np.zeros((1, gen.config.latent_dim), np.float32), np.eye(gen.config.num_classes, dtype=np.float32)[:1]
    options = ort.RunOptions()
    options.add_run_config_entry("gpu_graph_id", "0")
    prior, key, temp = gen.config.prior, request_key(0), gen.config.sampling_temperature(None)

    def inside(step: Callable[[], object]) -> dict[str, float]:
        return runner.owner.call(lambda: timed(step, 2000))

    steps = {
        "generate np": timed(lambda: gen.generate([3], 1, rng=0), 2000),
        "generate uint8": timed(lambda: gen.generate([3], 1, rng=0, output_type="uint8"), 2000),
        "draw z (host)": timed(lambda: prior_latents(prior, np.array([3]), key, 0, temp), 2000),
        "owner-thread hop": timed(lambda: runner.owner.call(lambda: None), 2000),
        "copy z and y in": inside(lambda: (bucket.z.update_inplace(z), bucket.y.update_inplace(y))),
        "graph replay": inside(lambda: bucket.session.run_with_iobinding(bucket.binding, options)),
        "take rows np": inside(lambda: runner._take_rows(bucket, 1, "np")),
        "take rows uint8": inside(lambda: runner._take_rows(bucket, 1, "uint8")),
        "OrtValue.numpy()": inside(lambda: bucket.samples.numpy()),
    }
    gen.close()
    return steps


def ort_session(model: Path, search: str, graphs: bool, profile: bool = False) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.enable_profiling = profile
    cuda = {"use_tf32": "0", "cudnn_conv_algo_search": search, "enable_cuda_graph": "1" if graphs else "0"}
    return ort.InferenceSession(str(model), options, providers=[("CUDAExecutionProvider", cuda)])


def ort_decoder(model: Path, n: int, search: str, graphs: bool, config: Any,
                profile: bool = False) -> tuple[Callable[[], object], ort.InferenceSession]:
    """A timed call of the decoder on bound device buffers (n rows), and its session."""
    session = ort_session(model, search, graphs, profile)
    rng = np.random.default_rng(0)
    z = ort.OrtValue.ortvalue_from_numpy(rng.standard_normal((n, config.latent_dim), dtype=np.float32), "cuda", 0)
    y = ort.OrtValue.ortvalue_from_numpy(np.eye(config.num_classes, dtype=np.float32)[np.arange(n) % 10], "cuda", 0)
    out = ort.OrtValue.ortvalue_from_shape_and_type([n, *config.sample_shape], np.float32, "cuda", 0)
    binding = session.io_binding()
    binding.bind_ortvalue_input("z", z)
    binding.bind_ortvalue_input("y", y)
    binding.bind_ortvalue_output("samples", out)
    options = ort.RunOptions()
    if graphs:
        options.add_run_config_entry("gpu_graph_id", "0")
    return (lambda: session.run_with_iobinding(binding, options)), session


def torch_decoder(module: Any, n: int, config: Any, graphs: bool) -> Callable[[], object]:
    z = torch.randn((n, config.latent_dim), device="cuda")
    y = torch.eye(config.num_classes, device="cuda")[torch.arange(n, device="cuda") % 10]
    with torch.inference_mode():
        for _ in range(3):
            module(z, y)
    torch.cuda.synchronize()
    if not graphs:
        def eager() -> object:
            with torch.inference_mode():
                module(z, y)
            return torch.cuda.synchronize()
        return eager
    graph = torch.cuda.CUDAGraph()
    with torch.inference_mode(), torch.cuda.graph(graph):
        module(z, y)

    def replay() -> object:
        graph.replay()
        return torch.cuda.synchronize()
    return replay


def decoder_alone(model: Path, fp16: Path | None) -> list[dict[str, Any]]:
    from cvae_sdk_training.bench_engines import torch_generative_path

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    module, config = torch_generative_path(model)
    module = module.cuda().eval()
    rows = []
    for n in SIZES:
        calls = 200 if n <= 4096 else 20
        for search in SEARCHES:
            for graphs in (True, False):
                call, _ = ort_decoder(model, n, search, graphs, config)
                rows.append({"engine": "onnxruntime fp32", "search": search, "graphs": graphs, "rows": n,
                             **timed(call, calls)})
        if fp16 is not None:
            for search in ("HEURISTIC", "EXHAUSTIVE"):
                call, _ = ort_decoder(fp16, n, search, True, config)
                rows.append({"engine": "onnxruntime fp16", "search": search, "graphs": True, "rows": n,
                             **timed(call, calls)})
        for graphs in (False, True):
            rows.append({"engine": "torch fp32", "graphs": graphs, "rows": n,
                         **timed(torch_decoder(module, n, config, graphs), calls)})
        rows.append({"engine": "torch fp16", "graphs": True, "rows": n,
                     **timed(_half_call(copy.deepcopy(module).half(), n, config), calls)})
    return rows


def _half_call(module: Any, n: int, config: Any) -> Callable[[], object]:
    class Half(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = module

        def forward(self, z: Any, y: Any) -> Any:
            return self.inner(z.half(), y.half())

    return torch_decoder(Half(), n, config, graphs=True)


def op_profile(model: Path, search: str, n: int = 4096) -> dict[str, float]:
    config = Generator.from_pretrained(model, providers=["CPUExecutionProvider"]).config
    call, session = ort_decoder(model, n, search, False, config, profile=True)
    for _ in range(20):
        call()
    events = json.loads(Path(session.end_profiling()).read_text())
    total: dict[str, float] = defaultdict(float)
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            total[event["args"]["op_name"]] += event["dur"] / 20
    return dict(sorted(total.items(), key=lambda kv: -kv[1]))  # µs per run, by operator type


def host_draw(model: Path) -> list[dict[str, Any]]:
    config = Generator.from_pretrained(model, providers=["CPUExecutionProvider"]).config
    rows = []
    key, temp = request_key(0), config.sampling_temperature(None)
    for n in (4096, 65536):
        ids = np.arange(n) % 10
        rows.append({"rows": n, "one_thread": timed(lambda i=ids: _latents(config.prior, i, key, 0, temp), 20),
                     "pool": timed(lambda i=ids: prior_latents(config.prior, i, key, 0, temp), 20)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--fp16", type=Path, default=None)
    args = parser.parse_args()
    model = shipped_model_path()
    report: dict[str, Any] = {"benchmark": "gpu_profile", "gpu": torch.cuda.get_device_name()}
    for name, part in (("batch1_steps_us", lambda: batch1_steps(model)),
                       ("host_draw", lambda: host_draw(model)),
                       ("decoder_alone", lambda: decoder_alone(model, args.fp16)),
                       ("ort_ops_4096_heuristic_us", lambda: op_profile(model, "HEURISTIC")),
                       ("ort_ops_4096_exhaustive_us", lambda: op_profile(model, "EXHAUSTIVE"))):
        try:
            report[name] = part()
        except Exception as err:  # one part failing must not lose the others
            report[name] = {"error": f"{type(err).__name__}: {err}"}
        print(name, json.dumps(report[name], indent=None)[:3000], flush=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
