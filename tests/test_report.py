"""The Snakemake report of a finished default run holds every figure and table."""

import json
import re

import pytest

from conftest import DEFAULT_CONFIG, run_snakemake

pytestmark = pytest.mark.workflow


def test_report_contains_every_figure_with_a_caption(default_run):
    report = default_run / "report.html"
    result = run_snakemake(default_run, "--report", str(report), configfile=DEFAULT_CONFIG)
    assert result.returncode == 0, result.stderr[-2000:]
    html = report.read_text()
    decoder = json.JSONDecoder()
    entries = {}
    for match in re.finditer(r'"((?:results|data)/[^"]+)": \{"name"', html):
        entry, _ = decoder.raw_decode(html, match.end() - len('{"name"'))
        entries[match.group(1)] = entry.get("caption", "")
    figures = sorted(
        str(p.relative_to(default_run)) for p in (default_run / "results").rglob("*.png")
    )
    tables = sorted(
        str(p.relative_to(default_run))
        for p in (default_run / "results").rglob("*.tsv")
        if p.parent.parent.name == "decoding" and p.parent.parent.parent.name == "group"
    ) + ["results/provenance.tsv"]
    assert figures, "the default run made no figure"
    for path in figures + tables:
        assert path in entries, f"{path} is not in the report"
        assert len(entries[path]) > 40, f"{path} has no real caption"
    assert "display only" in entries[next(p for p in figures if p.endswith("weights.png"))]
