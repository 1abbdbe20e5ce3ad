"""What a bench run says: ratios within the run, the best competitor per batch, a table, a plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

COMPETITORS = ("torch-eager", "torch-compile", "openvino")  # float32 engines: what sdk-fp32 is compared with
INT8_COMPETITORS = ("openvino-int8",)  # the same int8 file elsewhere: sdk-int8 meets these too
# On CUDA, each SDK engine against the torch engines that hand over the same thing: host arrays, or
# tensors left on the GPU (uint8 is the SDK's way to host arrays, fp16 its way to device ones)
CUDA_COMPETITORS = {"sdk-cuda": ("torch-cuda", "torch-cuda-graphs"),
                    "sdk-cuda-uint8": ("torch-cuda", "torch-cuda-graphs"),
                    "sdk-cuda-device": ("torch-cuda-device", "torch-cuda-graphs-device"),
                    "sdk-cuda-fp16": ("torch-cuda-device", "torch-cuda-graphs-device")}


def ratios(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """SDK throughput over PyTorch eager (and int8 over fp32), per batch size, within this run."""
    rate = {(r["engine"], r["batch"]): r["samples_per_s"] for r in rows}
    pairs = {"sdk-fp32/torch-eager": ("sdk-fp32", "torch-eager"), "sdk-int8/sdk-fp32": ("sdk-int8", "sdk-fp32"),
             "sdk-cuda/torch-cuda": ("sdk-cuda", "torch-cuda"),
             "sdk-cuda-device/torch-cuda-device": ("sdk-cuda-device", "torch-cuda-device")}
    out: dict[str, dict[str, float]] = {}
    for name, (a, b) in pairs.items():
        values = {str(batch): rate[(a, batch)] / rate[(b, batch)] for (engine, batch) in rate
                  if engine == a and (b, batch) in rate}
        if values:
            out[name] = values
    return out


def vs_best_competitor(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per batch: the fastest float32 competitor (torch eager, torch.compile, OpenVINO) and sdk-fp32's
    ratio to it; the fastest of those and OpenVINO on the int8 file, and sdk-int8's ratio to that;
    on CUDA, each SDK engine's ratio to the fastest torch engine with the same output (eager or
    CUDA graphs, ``CUDA_COMPETITORS``)."""
    out: dict[str, dict[str, Any]] = {}
    pools = [("sdk-fp32", "best_competitor", COMPETITORS),
             ("sdk-int8", "best_competitor_int8", COMPETITORS + INT8_COMPETITORS),
             *((sdk, f"best_competitor_{sdk}", pool) for sdk, pool in CUDA_COMPETITORS.items())]
    for batch in sorted({r["batch"] for r in rows}):
        here = {r["engine"]: r["samples_per_s"] for r in rows if r["batch"] == batch}
        entry: dict[str, Any] = {}
        for sdk, field, pool in pools:
            rivals = {e: v for e, v in here.items() if e in pool}
            if rivals:
                best = max(rivals, key=lambda e: rivals[e])
                entry[field] = best
                if sdk in here:
                    entry[f"{sdk}/best"] = here[sdk] / rivals[best]
        if entry:
            out[str(batch)] = entry
    return out


def format_table(report: dict[str, Any]) -> str:
    lines = [f"{'engine':<16}{'batch':>7}{'samples/s':>12}{'p50 us':>11}{'p99 us':>11}{'RSS MB':>9}{'roofline':>10}"]
    for r in report["rows"]:
        roof = f"{r['roofline_ratio']:.2f}" if r.get("roofline_ratio") is not None else "-"
        lines.append(f"{r['engine']:<16}{r['batch']:>7}{r['samples_per_s']:>12.0f}{r['p50_us']:>11.1f}"
                     f"{r['p99_us']:>11.1f}{r['peak_rss_mb']:>9.0f}{roof:>10}")
    for engine, why in report["skipped"].items():
        lines.append(f"{engine:<16} skipped: {why}")
    peaks = report.get("gemm") or {}
    if peaks:
        kernel = ", ".join(f"{b['internal_api']} {b['architecture']}" for b in peaks["blas"] or []) or "unknown"
        unset = f", {', '.join(peaks['environment_unset'])} unset" if peaks["environment_unset"] else ""
        int8 = f"; int8 peak {peaks['int8_ops_per_s'] / 1e9:.0f} GOP/s" if peaks["int8_ops_per_s"] else ""
        lines.append(f"roofline: float32 peak {peaks['float32_flops_per_s'] / 1e9:.0f} GFLOP/s ({kernel}{unset})"
                     f"{int8}")
    for batch, best in report.get("vs_best_competitor", {}).items():
        parts = [f"sdk-fp32 {best['sdk-fp32/best']:.2f}x the best float32 competitor ({best['best_competitor']})"
                 if "sdk-fp32/best" in best else "",
                 f"sdk-int8 {best['sdk-int8/best']:.2f}x the best competitor ({best['best_competitor_int8']})"
                 if "sdk-int8/best" in best else ""]
        parts += [f"{sdk} {best[sdk + '/best']:.2f}x {best['best_competitor_' + sdk]}"
                  for sdk in CUDA_COMPETITORS if sdk + "/best" in best]
        lines.append(f"batch {batch:>6}: " + "; ".join(part for part in parts if part))
    if (report.get("host_load") or {}).get("warning"):
        lines.append(f"WARNING: {report['host_load']['warning']}")
    b = report["batcher"]
    if "speedup" in b:
        lines.append(f"batcher: {b['callers']} concurrent single-image callers: {b['direct_samples_per_s']:.0f} -> "
                     f"{b['batcher_samples_per_s']:.0f} samples/s ({b['speedup']:.1f}x; one batch of all "
                     f"{b['callers']}: {b['ceiling_samples_per_s']:.0f}/s, {b['ceiling_speedup']:.1f}x)")
    return "\n".join(lines)


def plot(report: dict[str, Any], out: Path) -> None:
    """samples/s against batch size, one line per engine (needs matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for engine in dict.fromkeys(r["engine"] for r in report["rows"]):
        pts = [(r["batch"], r["samples_per_s"]) for r in report["rows"] if r["engine"] == engine]
        ax.plot(*zip(*pts, strict=True), marker="o", label=engine)
    if report.get("roofline_samples_per_s"):
        ax.axhline(report["roofline_samples_per_s"], color="grey", linestyle="--", label="fp32 GEMM roofline")
    ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="samples/s",
           title=f"Sampling throughput, {report['threads']} threads")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)

