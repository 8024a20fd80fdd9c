"""Junk input (empty, 1 MB, binary, other languages): scored or skipped with a reason, no crash."""

from __future__ import annotations

import os
import random
from pathlib import Path

from monitor.score.config import ScoreConfig
from monitor.score.model import load_model
from monitor.score.pipeline import ScoringPipeline
from monitor.score.text import prepare

from .kit import news, wait_for

CFG = ScoreConfig(intra_op_threads=1, max_wait_ms=1)


def test_prepare_rules() -> None:
    assert prepare(news(1, title=""), CFG).skip == "empty_text"
    assert prepare(news(1, title="   \n\t "), CFG).skip == "empty_text"
    assert prepare(news(1, title="!!! ..."), CFG).skip == "empty_text"
    rng = random.Random(0)
    junk = bytes(rng.randrange(256) for _ in range(4000)).decode("latin-1")
    assert prepare(news(1, title=junk), CFG).skip == "binary"
    assert prepare(news(1, title="\ufffd" * 50), CFG).skip == "binary"
    big = prepare(news(1, title="Shares fall " * 100_000), CFG)
    assert big.skip is None and "truncated" in big.flags and len(big.text) == CFG.max_chars
    de = prepare(news(1, title="Aktien fallen nach Gewinnwarnung", lang="de"), CFG)
    assert de.skip is None and de.flags == ("lang_unsupported",)
    skip_de = ScoreConfig(other_languages="skip")
    assert prepare(news(1, title="Aktien fallen", lang="de"), skip_de).skip == "lang_unsupported"
    both = prepare(news(1, title="Profit up", summary="Guidance raised"), CFG)
    assert both.text == "Profit up. Guidance raised"


def test_junk_through_the_pipeline_never_crashes(tiny_model: Path) -> None:
    rng = random.Random(1)
    items = [
        news(0, title=""),
        news(1, title="x" * 1_000_000),
        news(2, title=os.urandom(2000).decode("latin-1")),
        news(3, title="株価が急落、業績予想を下方修正", lang="ja"),
        news(4, title="Нефть дешевеет на фоне санкций", lang="ru"),
        news(5, title="\x00\x01\x02 binary \x03" * 10),
        news(6, title="🚀📉💥" * 30),
        news(7, title="Acme " + "".join(chr(rng.randrange(0x20, 0x3000)) for _ in range(3000))),
        news(8, title="", summary="Only a summary: bank fined for misconduct"),
        news(9, title="Normal headline: oil prices rise"),
    ]
    model = load_model(tiny_model, CFG)
    pipe = ScoringPipeline(model, CFG).start()
    for i, item in enumerate(items):
        pipe.submit(item, i)
    got = []

    def all_in() -> bool:
        got.extend(pipe.collect(0.05))
        return len(got) == len(items)

    wait_for(all_in, 30, "results")
    assert pipe.close(5.0)
    by_ref = {r.ref: r for r in got}
    assert sorted(by_ref) == list(range(len(items)))
    assert by_ref[0].skipped == "empty_text" and "unscored:empty_text" in by_ref[0].record.flags
    assert by_ref[1].skipped is None and "truncated" in by_ref[1].record.flags
    assert by_ref[2].skipped == "binary"
    assert by_ref[3].skipped is None and "lang_unsupported" in by_ref[3].record.flags
    assert by_ref[8].skipped is None and by_ref[9].skipped is None
    for r in got:
        assert r.record.model == model.info
        assert abs(sum(r.record.sentiment.probs.values()) - 1.0) < 1e-4
