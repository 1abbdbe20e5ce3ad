"""Docs are generated from recorded results: the tables in benchmarks/quality.md match their files."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _quality_table() -> object:
    spec = importlib.util.spec_from_file_location("quality_table", ROOT / "benchmarks" / "quality_table.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_own_data_table_matches_its_results_file() -> None:
    table = _quality_table().own_data_table()  # type: ignore[attr-defined]
    assert table.count("\n") >= 2, "benchmarks/results/own_data.jsonl holds no rows"
    assert table in (ROOT / "benchmarks" / "quality.md").read_text(), \
        "regenerate with: python benchmarks/quality_table.py own-data"


def test_decoder_table_matches_its_results_files() -> None:
    table = _quality_table().decoder_table()  # type: ignore[attr-defined]
    assert table in (ROOT / "benchmarks" / "quality.md").read_text(), \
        "regenerate with: python benchmarks/quality_table.py decoder"
