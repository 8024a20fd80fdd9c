"""`riskwire bench score` end to end on a small input (needs the train extra for baselines)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.train
def test_bench_score_prints_table_and_json(tiny_model: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "monitor.cli",
            "bench",
            "score",
            "--items",
            "48",
            "--repeat",
            "1",
            "--latency-items",
            "30",
            "--rate",
            "50",
            "--model-dir",
            str(tiny_model),
            "--json",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    doc = json.loads(lines[-1])
    for key in ("ratio_vs_tutorial", "ratio_vs_pipeline", "p99_ms", "peak_rss_mb"):
        assert isinstance(doc[key], float) and doc[key] > 0, key
    assert set(doc["items_per_s"]) >= {"a", "b", "c"}
    assert any(line.startswith("(c) riskwire worker path") for line in lines)
