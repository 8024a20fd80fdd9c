"""`riskwire train` options: bf16 autocast where the CPU has it, `--set` overrides of any recipe
field, and one error listing every bad value with the option it came from."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

pytest.importorskip("torch")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from exporters import commands, recipe, train  # noqa: E402
from exporters import data as ds  # noqa: E402
from exporters.distill import teacher_probabilities  # noqa: E402
from exporters.model import load_classifier  # noqa: E402
from exporters.tiny import build_tiny_model_dir  # noqa: E402
from monitor.errors import ConfigError  # noqa: E402


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers(dest="command"))
    return parser


def test_set_options_merge_into_recipe_fields_with_json_values() -> None:
    args = _parser().parse_args(
        [
            "train",
            "--set",
            "patience=6",
            "--set",
            'agreement_weight={"50": 0.4}',
            "--set",
            "pooling=cls",
            "--set",
            "patience=7",
        ]
    )
    assert args.set == {"patience": 7, "agreement_weight": {"50": 0.4}, "pooling": "cls"}
    cfg = commands.train_config(args.set)
    assert cfg.patience == 7
    assert cfg.agreement_weight == {50: 0.4}
    assert cfg.pooling == "cls"


def test_set_without_equals_sign_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(["train", "--set", "patience"])
    assert "expected FIELD=VALUE, got 'patience'" in capsys.readouterr().err


def test_every_bad_field_is_listed_with_its_value() -> None:
    with pytest.raises(ConfigError) as err:
        commands.train_config({"epochs": -2, "no_such_field": 1, "precision": "fp8"})
    text = str(err.value)
    assert "riskwire train options" in text
    assert "epochs: Input should be greater than 0 (got -2)" in text
    assert "no_such_field: Extra inputs are not permitted (got 1)" in text
    assert "precision:" in text and "'fp8'" in text


def test_auto_precision_follows_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(train, "cpu_has_bf16", lambda: True)
    assert train.resolve_precision("auto") == "bf16"
    monkeypatch.setattr(train, "cpu_has_bf16", lambda: False)
    assert train.resolve_precision("auto") == "fp32"
    assert train.resolve_precision("fp32") == "fp32"


def test_asking_for_bf16_on_a_cpu_without_it_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(train, "cpu_has_bf16", lambda: False)
    with pytest.raises(ConfigError, match="this CPU has no native bf16"):
        commands.train_config({"precision": "bf16"})


@pytest.mark.skipif(not train.cpu_has_bf16(), reason="this CPU has no native bf16")
def test_bf16_autocast_keeps_fp32_weights_and_close_logits() -> None:
    torch.manual_seed(0)
    model = load_classifier(layers=2, n_risk=11).eval()
    ids = torch.randint(1000, 20000, (4, 12))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        ref_sent, ref_risk = model(ids, mask)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            sent, risk = model(ids, mask)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert sent.dtype == torch.bfloat16
    # bf16 keeps ~3 significant digits: close to fp32, and not identical (it really ran bf16).
    assert torch.allclose(sent.float(), ref_sent, atol=0.1)
    assert torch.allclose(risk.float(), ref_risk, atol=0.1)
    assert not torch.equal(sent.float(), ref_sent)


def _example(source: recipe.Source, sentiment: bool = True) -> train.Example:
    target = [0.0, 1.0, 0.0] if sentiment else None
    return train.Example("text", target, 1.0, None, 0.0, source)


def test_rdrop_takes_a_second_pass_only_for_listed_sources_with_a_sentiment_label() -> None:
    rows = [
        _example("twitter"),
        _example("phrasebank"),
        _example("risk"),
        _example("risk", False),
        _example("own"),
    ]
    off = commands.train_config({})
    assert train._rdrop_rows(off, rows) == []
    on = commands.train_config({"rdrop_weight": 1.0})
    assert train._rdrop_rows(on, rows) == [1]
    more = commands.train_config(
        {"rdrop_weight": 1.0, "rdrop_sources": ["phrasebank", "risk", "own"]}
    )
    assert train._rdrop_rows(more, rows) == [1, 2, 4]


def test_rdrop_sources_are_checked() -> None:
    with pytest.raises(ConfigError, match="rdrop_sources"):
        commands.train_config({"rdrop_weight": 1.0, "rdrop_sources": ["reuters"]})


def test_symmetric_kl_is_zero_for_equal_logits_and_matches_the_definition() -> None:
    a = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    b = torch.tensor([[0.0, 1.0, 0.0], [0.5, 0.5, 3.0]])
    assert train.symmetric_kl(a, a).item() == pytest.approx(0.0, abs=1e-7)
    pa, pb = a.softmax(dim=1), b.softmax(dim=1)
    expected = ((pa * (pa / pb).log()).sum(1) + (pb * (pb / pa).log()).sum(1)).mean() / 2
    assert train.symmetric_kl(a, b).item() == pytest.approx(expected.item(), rel=1e-6)
    assert train.symmetric_kl(a, b).item() == pytest.approx(train.symmetric_kl(b, a).item())


def test_distilled_mixes_the_teacher_into_sentiment_targets_only(tmp_path: Path) -> None:
    teacher = build_tiny_model_dir(tmp_path / "teacher")
    rows = [
        train.Example("Profit warning at Acme", [1.0, 0.0, 0.0], 1.0, None, 0.0, "phrasebank"),
        train.Example("Rating cut to junk", None, 0.5, [1.0] + [0.0] * 10, 1.0, "risk"),
        train.Example("Profit warning at Acme", [0.0, 1.0, 0.0], 1.0, None, 0.0, "twitter"),
    ]
    cfg = recipe.TrainConfig(distill_from=teacher, distill_alpha=0.5, threads=1)
    out, sha = train.distilled(rows, cfg)
    probs, want_sha = teacher_probabilities(teacher, ["Profit warning at Acme"], threads=1)
    assert sha == want_sha
    assert out[1] == rows[1]  # no sentiment target: nothing to mix
    np.testing.assert_allclose(out[0].sent_target, 0.5 * np.array([1.0, 0, 0]) + 0.5 * probs[0])  # type: ignore[arg-type]
    np.testing.assert_allclose(out[2].sent_target, 0.5 * np.array([0, 1.0, 0]) + 0.5 * probs[0])  # type: ignore[arg-type]
    assert [e.sent_weight for e in out] == [e.sent_weight for e in rows]


def test_distill_alpha_outside_0_1_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="distill_alpha"):
        commands.train_config({"distill_alpha": 1.5})


def test_twitter_weight_sets_the_loss_weight_of_twitter_rows_only() -> None:
    root = ds.resolve_datasets(None)
    base = {"limit_per_source": 12, "risk_repeat": 1}
    plain, _, _, _ = train.build_training_set(commands.train_config(base), root)
    cfg = commands.train_config({**base, "twitter_weight": 0.25})
    weighted, _, _, _ = train.build_training_set(cfg, root)
    assert [e.text for e in weighted] == [e.text for e in plain]
    for a, b in zip(plain, weighted, strict=True):
        if a.source == "twitter":
            assert (a.sent_weight, b.sent_weight) == (1.0, 0.25)
        else:
            assert b.sent_weight == a.sent_weight
    assert {e.source for e in weighted} >= {"twitter", "phrasebank", "risk"}
    with pytest.raises(ConfigError, match="twitter_weight"):
        commands.train_config({"twitter_weight": -1})


def _dropout_rates(model: torch.nn.Module) -> set[float]:
    return {m.p for m in model.encoder.modules() if isinstance(m, torch.nn.Dropout)}


def test_encoder_dropout_replaces_the_base_models_and_rejects_one_or_more() -> None:
    model = load_classifier(layers=1, n_risk=11, encoder_dropout=0.3)
    assert _dropout_rates(model) == {0.3}
    assert model.encoder.config.attention_probs_dropout_prob == 0.3
    assert _dropout_rates(load_classifier(layers=1, n_risk=11)) == {0.1}
    with pytest.raises(ConfigError, match="encoder_dropout"):
        commands.train_config({"encoder_dropout": 1.0})
