"""`riskwire bench collect` end to end, on a handful of feeds."""

from __future__ import annotations

import json

import pytest

from monitor.cli import main


def test_bench_collect_small_run_prints_table_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "collect", "--feeds", "30", "--entries", "5", "--repeat", "1", "--json"])
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0
    assert any(line.startswith("feeds/s") for line in out)
    doc = json.loads(out[-1])
    for key in ("feeds_per_s", "peak_rss_mb", "baseline_feeds_per_s", "cpu_s_per_feed"):
        assert doc[key] > 0
    n200 = 30 - doc["feeds_304"]
    assert doc["items_published"] == n200 * 5
