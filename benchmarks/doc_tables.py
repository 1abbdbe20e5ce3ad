"""Render the recorded results as the markdown tables of the docs; ``tests/test_docs.py`` keeps the docs
in step with these files.

    python benchmarks/doc_tables.py NAME      # NAME: one of TABLES below, e.g. sweep, shipped, bench-conv

Every table reads only files under ``benchmarks/results/`` (and ``exported/evaluation.json``), so a
number in a table is a number in a recorded file.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cvae_sdk.bench import vs_best_competitor

RESULTS = Path(__file__).resolve().parent / "results"
TARGETS = {"label_fidelity": 0.99, "worst_class_fidelity": 0.97, "frechet_ratio": 3.0, "diversity_ratio": 0.9}
# the own-data targets: MNIST as shipped, every other set by the ratios of the unseen set
OWN_TARGETS = {"mnist": {"label_fidelity": 0.99, "worst_class_fidelity": 0.98, "frechet_ratio": 1.5,
                         "diversity_ratio": 0.9},
               "other": {"label_fidelity": 0.95, "worst_class_fidelity": 0.90, "frechet_ratio": 2.5,
                         "diversity_ratio": 0.85}}
# judged by the colour bar: fidelity against the classifier's own accuracy
COLOUR_SETS = ("scenes", "photos", "photos64")


def own_targets(row: dict[str, Any]) -> dict[str, float]:
    """The targets of a row's set: the shipped model's for mnist, a first bar for colour, else the grey sets'."""
    if row["set"] in COLOUR_SETS:
        return {"label_fidelity": 0.5 * row["classifier_test_accuracy"], "worst_class_fidelity": 0.15,
                "frechet_ratio": 20.0, "diversity_ratio": 0.85}
    return OWN_TARGETS["mnist" if row["set"] == "mnist" else "other"]


def jsonl(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (RESULTS / name).read_text().splitlines() if line.strip()]


def mark(key: str, value: float, targets: dict[str, float] = TARGETS, digits: int = 3) -> str:
    """``value`` in bold when it meets its target."""
    ok = value <= targets[key] if key == "frechet_ratio" else value >= targets[key]
    return f"**{value:.{digits}f}**" if ok else f"{value:.{digits}f}"


def temperature_spread(row: dict[str, Any]) -> str:
    """A row's per-class temperatures as "lowest-highest", or "-" when it has none."""
    temps = row["class_temperatures"] or {}
    return f"{min(temps.values()):.2f}-{max(temps.values()):.2f}" if temps else "-"


def sweep_table() -> str:
    """Every recipe of the MNIST sweep: results/quality_sweep.jsonl."""
    lines = ["| variant | training flags | prior | T | val ELBO | active units | fidelity | worst class "
             "| FD | FD / floor | diversity | train s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in jsonl("quality_sweep.jsonl"):
        flags = " ".join(r["train_flags"])
        lines.append(f"| {r['variant']} | `{flags}` | {r['prior']} | {r['temperature']} | {r['val_elbo']:.1f} "
                     f"| {r['active_units']} | {mark('label_fidelity', r['label_fidelity'])} "
                     f"| {mark('worst_class_fidelity', r['worst_class_fidelity'])} | {r['frechet_distance']:.1f} "
                     f"| {mark('frechet_ratio', r['frechet_ratio'])} | {mark('diversity_ratio', r['diversity_ratio'])} "
                     f"| {r['train_seconds']:.0f} |")
    return "\n".join(lines)


def shipped_table() -> str:
    """The shipped model, and the one it replaced, at several temperatures: results/shipped_temperatures.jsonl."""
    lines = ["| model | T | fidelity | worst class | FD / floor | diversity |", "| --- | --- | --- | --- | --- | --- |"]
    shipped = OWN_TARGETS["mnist"]
    for r in jsonl("shipped_temperatures.jsonl"):
        default = " (its default)" if r["shipped_default"] else ""
        scores = " | ".join(mark(key, r[key], shipped, 4 if key == "label_fidelity" else 3) for key in shipped)
        lines.append(f"| {r['release']} | {r['temperature']}{default} | {scores} |")
    return "\n".join(lines)


def own_data_table() -> str:
    """One row per set: the two default commands, timed, scored by an independent classifier."""
    lines = ["| set | train images | epochs run (best) | train + export s | fidelity | worst class | FD / floor "
             "| diversity | temperatures |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in jsonl("own_data.jsonl"):
        t = own_targets(r)
        spread = temperature_spread(r)
        scores = " | ".join(mark(key, r[key], t) for key in t)
        lines.append(f"| {r['set']} | {r['train_images']:,} | {r['epochs_run']} ({r['best_epoch']}) "
                     f"| {r['train_seconds'] + r['export_seconds']:.0f} | {scores} | {spread} |")
    return "\n".join(lines)


def own_variants_table() -> str:
    """Flags tried against the defaults on the own-data sets: results/own_data_variants.jsonl."""
    lines = ["| set | training flags | epochs run (best) | fidelity | worst class | FD / floor | diversity "
             "| temperatures |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in jsonl("own_data_variants.jsonl"):
        t = own_targets(r)
        spread = temperature_spread(r)
        scores = " | ".join(mark(key, r[key], t) for key in t)
        lines.append(f"| {r['set']} | `{r['train_flags']}` | {r['epochs_run']} ({r['best_epoch']}) | {scores} "
                     f"| {spread} |")
    return "\n".join(lines)


def decoder_table() -> str:
    """Quality (glyphs, T = 0.9) beside sampling cost, per decoder: results/decoder_choice.jsonl and the bench runs."""
    lines = ["| decoder | MFLOP/sample | samples/s, batch 4096 | fidelity | worst class | FD / floor | diversity |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in (r for r in jsonl("decoder_choice.jsonl") if r["temperature"] == 0.9):
        bench = _bench(f"decoder-choice-{'conv' if r['arch'] == 'conv' else 'dense1024'}")
        rate = next(b["samples_per_s"] for b in bench["rows"] if b["engine"] == "sdk-fp32" and b["batch"] == 4096)
        t = OWN_TARGETS["other"]
        scores = " | ".join(mark(key, r[key], t) for key in t)
        lines.append(f"| {r['arch']} | {bench['flops_per_sample'] / 1e6:.2f} | {rate:,.0f} | {scores} |")
    return "\n".join(lines)


def upsample_table() -> str:
    """Transposed vs sub-pixel upsampling in the conv decoder: the own-data variants (same calibration), then
    the SDK's fp32 rate on each glyphs artifact (results/decoder-choice-{transpose,subpixel}/bench.json)."""
    lines = ["| set | upsampling | val ELBO | fidelity | worst class | FD / floor | diversity |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    rows = [r for r in jsonl("own_data_variants.jsonl") if r["train_flags"].startswith("--upsample")]
    for r in sorted(rows, key=lambda r: (r["set"] != "glyphs", r["train_flags"] != "--upsample transpose")):
        if r["set"] != "mnist":
            t = OWN_TARGETS["other"]
            scores = " | ".join(mark(key, r[key], t) for key in t)
            lines.append(f"| {r['set']} | {r['train_flags'].split()[-1]} | {r['val_elbo']:.2f} | {scores} |")
    lines += ["", "| upsampling | MFLOP/sample as written | samples/s, batch 256 | samples/s, batch 4096 "
                  "| GEMM roofline, batch 4096 |", "| --- | --- | --- | --- | --- |"]
    for kind in ("transpose", "subpixel"):
        bench = _bench(f"decoder-choice-{kind}")
        fp32 = {b["batch"]: b for b in bench["rows"] if b["engine"] == "sdk-fp32"}
        lines.append(f"| {kind} | {bench['flops_per_sample'] / 1e6:.2f} | {fp32[256]['samples_per_s']:,.0f} "
                     f"| {fp32[4096]['samples_per_s']:,.0f} | {fp32[4096]['roofline_ratio']:.2f} |")
    return "\n".join(lines)


def _bench(folder: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((RESULTS / folder / "bench.json").read_text())
    return data


def bench_table(folder: str) -> str:
    """One `cvae-sdk bench` run: samples/s per engine and batch, the ratios, the roofline: FOLDER/bench.json.

    The ratios to the best competitor follow :func:`cvae_sdk.bench.vs_best_competitor`.
    """
    bench = _bench(folder)
    rate = {(r["engine"], r["batch"]): r for r in bench["rows"]}
    versus = vs_best_competitor(bench["rows"])  # the bench's own rule, also for runs recorded before it changed
    engines = [e for e in ("torch-eager", "torch-compile", "openvino", "openvino-int8", "sdk-fp32", "sdk-int8")
               if any(key[0] == e for key in rate)]
    peaks = bench.get("gemm")  # runs recorded before the bench measured the int8 peak and named the kernel
    how, int8_peak = "", ""
    if peaks:
        kernel = ", ".join(f"{b['internal_api']} {b['architecture']}" for b in peaks["blas"] or []) or "unknown"
        unset = ", ".join(peaks["environment_unset"]) or "no OPENBLAS variable"
        how = (f" (BLAS kernel {kernel}; {unset} set by the host"
               + (f", whose setting measured {peaks['float32_flops_per_s_as_set'] / 1e9:.0f} GFLOP/s" if
                  peaks["environment_unset"] else "") + ")")
        int8_peak = (f"; int8 matrix multiply {peaks['int8_ops_per_s'] / 1e9:.0f} GOP/s, int8 roofline "
                     f"{bench['int8_roofline_samples_per_s']:,.0f} samples/s")
    lines = [f"`{folder}/bench.json`: {bench['machine']['cpu']}, {bench['threads']} threads, "
             f"{bench['flops_per_sample'] / 1e6:.2f} MFLOP/sample, float32 GEMM "
             f"{bench['gemm_flops_per_s'] / 1e9:.0f} GFLOP/s{how}, roofline {bench['roofline_samples_per_s']:,.0f} "
             f"samples/s{int8_peak}.", "",
             "| batch | " + " | ".join(engines) + " | fp32 / best other | int8 / best other | int8 / fp32 "
             "| fp32 roofline |" + (" int8 roofline |" if peaks else "") + " fp32 p99 µs |",
             "| --- | " + " | ".join("---" for _ in engines) + " | --- | --- | --- | --- |"
             + (" --- |" if peaks else "") + " --- |"]
    for batch in sorted({key[1] for key in rate}):
        cells = [f"{rate[(e, batch)]['samples_per_s']:,.0f}" if (e, batch) in rate else "-" for e in engines]
        fp32, int8 = rate.get(("sdk-fp32", batch)), rate.get(("sdk-int8", batch))
        vs = versus.get(str(batch), {})
        best = f"{vs['sdk-fp32/best']:.2f}" if "sdk-fp32/best" in vs else "-"
        int8_best = f"{vs['sdk-int8/best']:.2f}" if "sdk-int8/best" in vs else "-"
        q = f"{int8['samples_per_s'] / fp32['samples_per_s']:.2f}" if int8 and fp32 else "-"
        roof = f"{fp32['roofline_ratio']:.2f}" if fp32 and fp32.get("roofline_ratio") else "-"
        if peaks:
            roof += f" | {int8['roofline_ratio']:.2f}" if int8 and int8.get("roofline_ratio") else " | -"
        p99 = f"{fp32['p99_us']:,.0f}" if fp32 else "-"
        lines.append(f"| {batch:,} | " + " | ".join(cells) + f" | {best} | {int8_best} | {q} | {roof} | {p99} |")
    b = bench["batcher"]
    if "speedup" in b:
        lines += ["", f"Micro-batcher, {b['callers']} single-image callers: {b['direct_samples_per_s']:,.0f} -> "
                      f"{b['batcher_samples_per_s']:,.0f} samples/s ({b['speedup']:.2f}x); one `generate` call "
                      f"for all {b['callers']}: {b['ceiling_samples_per_s']:,.0f}/s ({b['ceiling_speedup']:.2f}x)."]
    return "\n".join(lines)


def margin_table() -> str:
    """Export's calibration margin on the glyph runs, the trained weights fixed: results/calibration_margin.jsonl."""
    lines = ["| glyph run | margin | fidelity | worst class | FD / floor | diversity | temperatures |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    t = OWN_TARGETS["other"]
    for r in jsonl("calibration_margin.jsonl"):
        scores = " | ".join(mark(key, r[key], t) for key in t)
        lines.append(f"| {r['run']} | {r['margin']} | {scores} | {temperature_spread(r)} |")
    return "\n".join(lines)


def ddp_table() -> str:
    """Data-parallel training throughput: results/ddp_scaling.json."""
    data = json.loads((RESULTS / "ddp_scaling.json").read_text())
    lines = ["| arch | processes x threads | samples/s | final train loss |", "| --- | --- | --- | --- |"]
    for r in data["results"]:
        lines.append(f"| {r['arch']} | {r['processes']} x {r['threads_per_process']} | {r['samples_per_s']:,.0f} "
                     f"| {r['final_train_loss']:.4f} |")
    return "\n".join(lines)


def serve_table(name: str = "serve_load.json") -> str:
    """HTTP load on loopback against the in-process call: results/serve_load.json (or NAME)."""
    data = json.loads((RESULTS / name).read_text())
    one = data["rows"][0]["requests_per_s"]
    lines = ["| clients | requests/s | x one client | p50 ms | p99 ms |", "| --- | --- | --- | --- | --- |"]
    for r in data["rows"]:
        lines.append(f"| {r['clients']} | {r['requests_per_s']:,.0f} | {r['requests_per_s'] / one:.2f} "
                     f"| {r['p50_ms']:.2f} | {r['p99_ms']:.1f} |")
    p = data["in_process"]
    lines.append(f"| in process | {p['requests_per_s']:,.0f} | - | {p['p50_ms']:.2f} | {p['p99_ms']:.2f} |")
    return "\n".join(lines)


def _card_report() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((RESULTS.parent.parent / "exported" / "evaluation.json").read_text())
    return data


def card_table() -> str:
    """The model card's headline metrics: exported/evaluation.json."""
    r, t = _card_report(), OWN_TARGETS["mnist"]
    worst = min(r["per_class"], key=lambda row: row["fidelity"])
    return "\n".join([
        "| metric | value | target |", "| --- | --- | --- |",
        f"| label fidelity, overall | {mark('label_fidelity', r['label_fidelity'], t, 4)} "
        f"| ≥ {t['label_fidelity']} |",
        f"| label fidelity, worst digit | {mark('worst_class_fidelity', r['worst_class_fidelity'], t)} "
        f"(digit {worst['class']}) | ≥ {t['worst_class_fidelity']} |",
        f"| Fréchet distance (classifier features, per-class mean) | {r['frechet_distance']:.2f} "
        f"(floor {r['frechet_floor']:.2f}) | |",
        f"| Fréchet distance / real-vs-real floor | {mark('frechet_ratio', r['frechet_ratio'], t)} "
        f"| ≤ {t['frechet_ratio']} |",
        f"| diversity (pixel L2, relative to real) | {mark('diversity_ratio', r['diversity_ratio'], t)} "
        f"| ≥ {t['diversity_ratio']} |"])


def card_digits_table() -> str:
    """The model card's per-digit metrics: exported/evaluation.json."""
    lines = ["| digit | fidelity | FD | FD floor | diversity ratio |", "| --- | --- | --- | --- | --- |"]
    for row in _card_report()["per_class"]:
        lines.append(f"| {row['class']} | {row['fidelity']:.3f} | {row['frechet']:.1f} | {row['frechet_floor']:.1f} "
                     f"| {row['diversity_generated'] / row['diversity_real']:.3f} |")
    return "\n".join(lines)


def prior_components_table() -> str:
    """The aggregate prior refitted with M Gaussians per label on fixed trained weights, sampled at T = 1:
    results/prior_components.jsonl."""
    lines = ["| set | Gaussians per label | fit s | artifact MB | fidelity | worst class | FD / floor | diversity |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in jsonl("prior_components.jsonl"):
        t = own_targets(r)
        scores = " | ".join(mark(key, r[key], t) for key in t)
        lines.append(f"| {r['set']} | {r['components']} | {r['fit_seconds']:.1f} | {r['artifact_bytes'] / 1e6:.1f} "
                     f"| {scores} |")
    return "\n".join(lines)


def batch1_table() -> str:
    """A one-image generate call, step by step: results/batch1_overhead.json."""
    data = json.loads((RESULTS / "batch1_overhead.json").read_text())
    lines = ["| step | p50 µs | p99 µs |", "| --- | --- | --- |"]
    for name, step in data["steps"].items():
        lines.append(f"| {name} | {step['p50_us']:.1f} | {step['p99_us']:.1f} |")
    return "\n".join(lines)


def decoder_gap_table() -> str:
    """A default run's samples against its decoder's reconstructions of real images: results/decoder_gap.jsonl."""
    lines = ["| set | scored | fidelity | worst class | FD / floor | diversity |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in jsonl("decoder_gap.jsonl"):
        recon = f"{r['reconstructed_images']:,} reconstructions"
        for part, label in (("samples", "samples"), ("reconstructions", recon)):
            m = r[part]
            lines.append(f"| {r['set']} | {label} | {m['label_fidelity']:.4f} | {m['worst_class_fidelity']:.3f} "
                         f"| {m['frechet_ratio']:.3f} | {m['diversity_ratio']:.3f} |")
    return "\n".join(lines)


def adversarial_table() -> str:
    """The adversarial decoder phase on a default run: results/adversarial_phase.jsonl (rows without a "loss" ran
    the phase's first form, a spectrally normalised discriminator with the hinge loss)."""
    lines = ["| set | GAN loss | the discriminator sees | epochs | GAN weight | phase s | fidelity | worst class "
             "| FD / floor | diversity | reconstructions: FD / floor | diversity |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in jsonl("adversarial_phase.jsonl"):
        m, c = r["samples"], r["reconstructions"]
        fakes = " and ".join(r.get("fakes", ["reconstructions"]))
        lines.append(f"| {r['set']} | {r.get('loss', 'hinge, spectral norm')} | {fakes} | {r['epochs']} "
                     f"| {r['gan_weight']:g} | {r['phase_seconds']:.0f} "
                     f"| {m['label_fidelity']:.4f} | {m['worst_class_fidelity']:.3f} | {m['frechet_ratio']:.3f} "
                     f"| {m['diversity_ratio']:.3f} | {c['frechet_ratio']:.3f} | {c['diversity_ratio']:.3f} |")
    return "\n".join(lines)


def contrast_table() -> str:
    """The output contrast export chooses, against the decoder as trained: results/output_contrast.jsonl."""
    lines = ["| set | output contrast | fidelity | worst class | FD / floor | diversity |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in jsonl("output_contrast.jsonl"):
        how = "chosen" if r["chosen"] else "as trained"
        lines.append(f"| {r['set']} | {r['contrast']:g} ({how}) | {r['label_fidelity']:.4f} "
                     f"| {r['worst_class_fidelity']:.3f} | {r['frechet_ratio']:.3f} | {r['diversity_ratio']:.3f} |")
    return "\n".join(lines)


GPU = "gpu-h200"


def gpu_bench_table(name: str = "bench.json") -> str:
    """`cvae-sdk bench` with the CUDA engines on the GPU machine: results/gpu-h200/NAME."""
    bench: dict[str, Any] = json.loads((RESULTS / GPU / name).read_text())
    rate = {(r["engine"], r["batch"]): r for r in bench["rows"]}
    versus = vs_best_competitor(bench["rows"])
    engines = [e for e in ("torch-cuda", "torch-cuda-graphs", "sdk-cuda", "sdk-cuda-uint8", "torch-cuda-device",
                           "torch-cuda-graphs-device", "sdk-cuda-device", "sdk-cuda-fp16")
               if any(key[0] == e for key in rate)]
    peaks = bench["gemm_cuda_flops_per_s"]
    lines = [f"`{GPU}/{name}`: {bench['machine']['cpu']} host, {bench['flops_per_sample'] / 1e6:.2f} MFLOP/sample; "
             f"GEMM on the GPU {peaks['float32'] / 1e12:.1f} TFLOP/s float32 (no TF32), "
             f"{peaks['float16'] / 1e12:.0f} TFLOP/s float16.", "",
             "| batch | " + " | ".join(engines) + " | sdk-cuda / torch eager | sdk-cuda / best torch "
             "| sdk-cuda-device / best torch | sdk p99 µs |",
             "| --- | " + " | ".join("---" for _ in engines) + " | --- | --- | --- | --- |"]
    for batch in sorted({key[1] for key in rate}):
        cells = [f"{rate[(e, batch)]['samples_per_s']:,.0f}" if (e, batch) in rate else "-" for e in engines]
        vs = versus.get(str(batch), {})
        sdk, eager = rate.get(("sdk-cuda", batch)), rate.get(("torch-cuda", batch))
        ratios = [f"{sdk['samples_per_s'] / eager['samples_per_s']:.2f}" if sdk and eager else "-",
                  f"{vs['sdk-cuda/best']:.2f}" if "sdk-cuda/best" in vs else "-",
                  f"{vs['sdk-cuda-device/best']:.2f}" if "sdk-cuda-device/best" in vs else "-",
                  f"{sdk['p99_us']:,.0f}" if sdk else "-"]
        lines.append(f"| {batch:,} | " + " | ".join(cells + ratios) + " |")
    return "\n".join(lines)


def gpu_decoder_table() -> str:
    """The decoder alone on device buffers, onnxruntime against torch: results/gpu-h200/profile.json."""
    rows = json.loads((RESULTS / GPU / "profile.json").read_text())["decoder_alone"]
    columns = [("onnxruntime fp32", "HEURISTIC", True), ("onnxruntime fp32", "EXHAUSTIVE", True),
               ("onnxruntime fp32", "DEFAULT", True), ("onnxruntime fp32", "HEURISTIC", False),
               ("torch fp32", None, True), ("torch fp32", None, False), ("onnxruntime fp16", "HEURISTIC", True),
               ("onnxruntime fp16", "EXHAUSTIVE", True), ("torch fp16", None, True)]
    names = [f"{e.split()[0].replace('onnxruntime', 'ort')} {e.split()[1]}"
             + (f" {search.lower()}" if search else "") + ("" if graphs else ", no graph")
             for e, search, graphs in columns]
    lines = ["| rows | " + " | ".join(names) + " |", "| --- | " + " | ".join("---" for _ in names) + " |"]
    for n in sorted({r["rows"] for r in rows}):
        cells = []
        for engine, search, graphs in columns:
            hit = [r for r in rows if r["rows"] == n and r["engine"] == engine and r["graphs"] == graphs
                   and r.get("search") == search]
            cells.append(f"{hit[0]['p50_us']:,.0f}" if hit else "-")
        lines.append(f"| {n:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def gpu_steps_table() -> str:
    """A one-image generate on the GPU, step by step: results/gpu-h200/profile.json."""
    steps = json.loads((RESULTS / GPU / "profile.json").read_text())["batch1_steps_us"]
    lines = ["| step | p50 µs | p99 µs |", "| --- | --- | --- |"]
    lines += [f"| {name} | {s['p50_us']:.1f} | {s['p99_us']:.1f} |" for name, s in steps.items()]
    return "\n".join(lines)


TABLES: dict[str, Callable[[], str]] = {
    "batch1": batch1_table,
    "gpu-bench": gpu_bench_table, "gpu-bench-serial-draw": lambda: gpu_bench_table("bench-serial-draw.json"),
    "gpu-decoder": gpu_decoder_table, "gpu-steps": gpu_steps_table, "decoder-gap": decoder_gap_table,
    "adversarial": adversarial_table, "contrast": contrast_table,
    "card": card_table, "card-digits": card_digits_table,
    "sweep": sweep_table, "shipped": shipped_table, "own-data": own_data_table,
    "own-variants": own_variants_table, "decoder": decoder_table, "upsample": upsample_table,
    "bench-subpixel": lambda: bench_table("cpu-2core-subpixel16"),
    "bench-subpixel-repeat": lambda: bench_table("cpu-2core-subpixel16-repeat"),
    "bench-true-peak": lambda: bench_table("cpu-2core-true-peak"),
    "bench-avx2": lambda: bench_table("cpu-2core-avx2"),
    "bench-interleaved": lambda: bench_table("cpu-2core-interleaved"),
    "bench-interleaved-repeat": lambda: bench_table("cpu-2core-interleaved-repeat"),
    "bench-conv": lambda: bench_table("cpu-2core-conv16"), "bench-mlp": lambda: bench_table("cpu-2core-mlp16"),
    "ddp": ddp_table, "serve": serve_table, "serve-int8": lambda: serve_table("serve_load_int8.json"),
    "serve-workers": lambda: serve_table("serve_load_workers.json"),
    "serve-workers-int8": lambda: serve_table("serve_load_workers_int8.json"),
    "prior-components": prior_components_table, "margin": margin_table,
}


def main() -> None:
    if sys.argv[1:] in (["-h"], ["--help"]):
        print(__doc__.strip() + "\n\ntables: " + ", ".join(TABLES))
        return
    if len(sys.argv) != 2 or sys.argv[1] not in TABLES:
        sys.exit(f"usage: python benchmarks/doc_tables.py {{{'|'.join(TABLES)}}}")
    print(TABLES[sys.argv[1]]())


if __name__ == "__main__":
    main()
