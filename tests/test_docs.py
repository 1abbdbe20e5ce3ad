"""Docs are backed by recorded results: tables are rendered from the result files, every other measured
number in the docs is found in a result file, and README's command table lists every option."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import load_benchmark

ROOT = Path(__file__).resolve().parents[1]
DOCS = ["README.md", "benchmarks/quality.md", "exported/README.md", "benchmarks/results/README.md",
        "benchmarks/GPU.md"]
# Where each rendered table lives; regenerate with: python benchmarks/doc_tables.py NAME
TABLE_HOMES = {
    "sweep": "benchmarks/quality.md", "own-data": "benchmarks/quality.md",
    "own-variants": "benchmarks/quality.md", "decoder": "benchmarks/quality.md",
    "upsample": "benchmarks/quality.md", "margin": "benchmarks/quality.md", "contrast": "benchmarks/quality.md",
    "shipped": "benchmarks/quality.md", "card": "exported/README.md", "card-digits": "exported/README.md",
    "bench-subpixel": "benchmarks/results/README.md",
    "bench-subpixel-repeat": "benchmarks/results/README.md",
    "bench-true-peak": "benchmarks/results/README.md",
    "bench-avx2": "benchmarks/results/README.md",
    "bench-interleaved": "benchmarks/results/README.md",
    "bench-interleaved-repeat": "benchmarks/results/README.md",
    "bench-conv": "benchmarks/results/README.md", "bench-mlp": "benchmarks/results/README.md",
    "ddp": "benchmarks/results/README.md", "serve": "benchmarks/results/README.md",
    "serve-int8": "benchmarks/results/README.md", "serve-workers": "benchmarks/results/README.md",
    "serve-workers-int8": "benchmarks/results/README.md",
    "batch1": "benchmarks/results/README.md", "prior-components": "benchmarks/quality.md",
    "gpu-bench": "benchmarks/results/README.md", "gpu-bench-serial-draw": "benchmarks/results/README.md",
    "gpu-decoder": "benchmarks/results/README.md", "gpu-steps": "benchmarks/results/README.md",
    "decoder-gap": "benchmarks/quality.md", "adversarial": "benchmarks/quality.md",
}
# Numbers in the docs that are not measurements: settings, addresses, citations and versions.
CONSTANTS = {
    "1,000,000": "TrainConfig's sample budget (SAMPLE_BUDGET)",
    "600,000": "the sample budget before it",
    "1,280": "the fitted prior's Gaussians shared by the classes before the prior of codes",
    "32,768": "the prior of codes' budget (CODE_BUDGET)",
    "100,000": "the adversarial phase's images seen (ADVERSARIAL_BUDGET)",
    "1,024": "rows per CPU session run (CPU_CHUNK); the dense decoder's hidden width",
    "65,536": "rows per GPU session run (GPU_CHUNK)",
    "127.0": "127.0.0.1, the loopback address",
    "8000": "the server's default port",
    "16,384": "the server's default --max-queued-samples",
    "32121": "the onnxruntime pull request that fixed CUDA-graph replay",
    "2016": "the year of Burda et al.'s paper",
    "2017": "the year of Aitken et al.'s paper (ICNR)",
    "2026": "the month the onnxruntime fix was merged",
    "86.76": "Burda et al.'s published binarised-MNIST likelihood",
    "3.11": "the Python version",
    "1.35": "the MLP decoder's MFLOP/sample, as counted in the mlp bench file (1,354,496 FLOPs)",
}
NUMBER = re.compile(r"(?<![\w.\-/])(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+\.\d+|\d{4,})(%|x\b)?")


def _doc_tables() -> Any:
    return load_benchmark("doc_tables")


def _numbers(value: Any, out: list[float]) -> None:
    if isinstance(value, dict):
        for item in value.values():
            _numbers(item, out)
    elif isinstance(value, list):
        for item in value:
            _numbers(item, out)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        out.append(abs(float(value)))


def recorded_values() -> list[float]:
    """Every number in the result files, the model card's evaluation and the shipped artifacts' metadata."""
    import onnx

    values: list[float] = []
    files = [*(ROOT / "benchmarks" / "results").rglob("*.json"), ROOT / "exported" / "evaluation.json"]
    for path in files:
        _numbers(json.loads(path.read_text()), values)
    for path in (ROOT / "benchmarks" / "results").rglob("*.jsonl"):
        for line in path.read_text().splitlines():
            if line.strip():
                _numbers(json.loads(line), values)
    for path in (ROOT / "exported").glob("*.onnx"):
        for prop in onnx.load(str(path), load_external_data=False).metadata_props:
            try:
                _numbers(json.loads(prop.value), values)
            except json.JSONDecodeError:
                continue
    return values


def _is_recorded(text: str, suffix: str | None, values: list[float]) -> bool:
    """Whether some recorded value shows as ``text`` at its precision, in plain units, k, M or G, or %."""
    value = float(text.replace(",", ""))
    decimals = len(text.split(".")[1]) if "." in text else 0
    half = 0.5 * 10.0 ** -decimals
    scales = [0.01] if suffix == "%" else [1.0, 1e3, 1e6, 1e9]
    for scale in scales:
        target, tolerance = value * scale, half * scale * 1.0001
        if any(abs(v - target) <= tolerance for v in values):
            return True
    return False


@pytest.mark.parametrize("name", sorted(TABLE_HOMES))
def test_each_table_matches_its_results_file(name: str) -> None:
    table = _doc_tables().TABLES[name]()
    assert table.count("\n") >= 2, f"the results behind {name!r} hold no rows"
    assert table in (ROOT / TABLE_HOMES[name]).read_text(), \
        f"{TABLE_HOMES[name]} is out of date: python benchmarks/doc_tables.py {name}"


@pytest.mark.parametrize("doc", DOCS)
def test_every_measured_number_in_the_docs_is_recorded(doc: str) -> None:
    text = re.sub(r"```.*?```", "", (ROOT / doc).read_text(), flags=re.S)  # commands, not measurements
    tables = _doc_tables().TABLES
    for name in (name for name, home in TABLE_HOMES.items() if home == doc):
        text = text.replace(tables[name](), "")  # rendered from their files, checked above
    values = recorded_values()
    missing = [m.group(0) for m in NUMBER.finditer(text)
               if m.group(1) not in CONSTANTS and not _is_recorded(m.group(1), m.group(2), values)]
    assert missing == [], f"{doc}: numbers found in no file under benchmarks/results/ (record them or drop them)"


def test_no_session_or_issue_numbers_in_docs_and_code() -> None:
    pattern = re.compile(r"\b(session [0-9]|issue [0-9]|issue #?[0-9]|\(issue)", re.I)
    files = [ROOT / doc for doc in DOCS] + [p for folder in ("cvae_sdk", "training", "tests", "benchmarks")
                                            for p in (ROOT / folder).rglob("*.py")]
    hits = [f"{p.relative_to(ROOT)}: {m.group(0)}" for p in files for m in pattern.finditer(p.read_text())]
    assert hits == []


def test_readme_command_table_lists_every_option() -> None:
    import typer

    from cvae_sdk.cli import app

    readme = (ROOT / "README.md").read_text()
    group = typer.main.get_command(app)
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        row = next((line for line in readme.splitlines() if line.startswith(f"| `cvae-sdk {name}")), None)
        assert row is not None, f"README's command table has no row for {name}"
        options = [opt for param in command.params for opt in param.opts if opt.startswith("--") and opt != "--help"]
        absent = [opt for opt in options if opt not in row]
        assert absent == [], f"README's `cvae-sdk {name}` row leaves out {absent}"


def test_the_number_check_tells_recorded_from_invented() -> None:
    values = recorded_values()
    assert _is_recorded("0.9922", None, values)     # the shipped model's label fidelity
    assert _is_recorded("6.65", None, values)       # its MFLOP per sample (6,649,856 FLOPs in bench.json)
    assert _is_recorded("99.22", "%", values)
    assert not _is_recorded("0.98765", None, values)
    assert not _is_recorded("123,456.7", None, values)
