"""Rules validation: the golden file passes; one bad file per error, each with file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.alerts.config import load_rules_file
from monitor.config import load_config
from monitor.errors import ConfigError

DEMO = Path(__file__).resolve().parents[2] / "monitor" / "alerts" / "demo_rules.yaml"

GOOD = """\
watchlists:
  banks: [JPM, GS]
rules:
  - name: burst
    match:
      sentiment: negative
      watchlists: [banks]
    window: {size: 1h, allowed_lateness: 10m}
    condition:
      count: {min: 3}
"""

BAD = {
    "unknown_field": (
        """\
rules:
  - name: burst
    match:
      sentimnt: negative
""",
        4,
        "rules.0.match.sentimnt: unknown key",
    ),
    "bad_regex": (
        """\
rules:
  - name: r
    match:
      title_regex: "(unclosed"
""",
        4,
        "rules.0.match.title_regex: Value error, bad regular expression",
    ),
    "probability_above_one": (
        """\
rules:
  - name: r
    match:
      risk:
        - tag: fraud_misconduct
          min_p: 1.5
""",
        6,
        "rules.0.match.risk.0.min_p: Value error, probability 1.5 is impossible",
    ),
    "min_greater_than_max": (
        """\
rules:
  - name: r
    window: {size: 1h}
    condition:
      mean_polarity: {min: 0.5, max: -0.5}
""",
        5,
        "rules.0.condition.mean_polarity: Value error, min (0.5) is greater than max (-0.5)",
    ),
    "polarity_out_of_range": (
        """\
rules:
  - name: r
    match:
      polarity: {max: -2}
""",
        3,
        "rules.0.match: Value error, polarity max -2.0 is impossible",
    ),
    "share_negative_above_one": (
        """\
rules:
  - name: r
    window: {size: 1h}
    condition:
      share_negative: {min: 1.2}
""",
        4,
        "rules.0.condition: Value error, share_negative min 1.2 is impossible",
    ),
    "unknown_risk_tag": (
        """\
rules:
  - name: r
    match:
      risk: [{tag: fraud}]
""",
        4,
        "rules.0.match.risk.0.tag: Value error, unknown risk tag 'fraud'",
    ),
    "window_without_condition": (
        """\
rules:
  - name: r
    window: {size: 1h}
""",
        2,
        "rules.0: Value error, a rule with a window needs a condition",
    ),
    "bad_duration": (
        """\
rules:
  - name: r
    window: {size: soon}
    condition: {count: {min: 1}}
""",
        3,
        "rules.0.window.size: Value error, not a duration: 'soon'",
    ),
    "unknown_receiver_in_route": (
        """\
receivers:
  - {type: file, name: f, path: a.jsonl}
route:
  receiver: nobody
""",
        None,
        "route names unknown receivers ['nobody']",
    ),
    "unknown_receiver_type": (
        """\
receivers:
  - {type: pager, name: p}
""",
        2,
        "receivers.0: Input tag 'pager' found using 'type' does not match",
    ),
}


def test_golden_rules_file_and_demo_file_are_valid(tmp_path: Path) -> None:
    f = tmp_path / "rules.yaml"
    f.write_text(GOOD)
    doc = load_rules_file(f)
    assert doc.rules[0].window is not None and doc.rules[0].window.size == 3600
    demo = load_rules_file(DEMO)
    assert {r.name for r in demo.rules} >= {"negative_burst", "fraud_legal_high", "sentiment_drop"}
    assert any(r.type == "file" for r in demo.receivers)


@pytest.mark.parametrize("case", sorted(BAD))
def test_each_bad_rules_file_is_rejected_with_file_and_line(tmp_path: Path, case: str) -> None:
    text, line, message = BAD[case]
    f = tmp_path / f"{case}.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_rules_file(f)
    problems = "\n".join(err.value.problems)
    where = f"{f}:{line}: " if line is not None else f"{f}"
    assert where in problems, problems
    assert message in problems, problems


def test_main_config_with_a_bad_rules_file_names_the_rules_file(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(BAD["bad_regex"][0])
    main = tmp_path / "riskwire.yaml"
    main.write_text(f"alerts:\n  rules_file: {rules}\n")
    with pytest.raises(ConfigError) as err:
        load_config(main, env={})
    assert f"{rules}:4: rules.0.match.title_regex" in "\n".join(err.value.problems)


def test_inline_rules_are_checked_with_main_file_lines(tmp_path: Path) -> None:
    main = tmp_path / "riskwire.yaml"
    main.write_text("alerts:\n  rules:\n    - name: r\n      match:\n        min_probability: 2\n")
    with pytest.raises(ConfigError) as err:
        load_config(main, env={})
    text = "\n".join(err.value.problems)
    assert f"{main}:4: alerts.rules.0.match" in text and "min_probability 2.0 is impossible" in text


def test_secrets_come_from_the_environment_and_stay_masked(tmp_path: Path) -> None:
    main = tmp_path / "riskwire.yaml"
    main.write_text(
        "alerts:\n  receivers:\n    - type: webhook\n      name: desk\n"
        "      url: https://desk.example/hook\n      secret: ${DESK_SECRET}\n"
        "  route: {receiver: desk}\n"
    )
    cfg = load_config(main, env={"DESK_SECRET": "hunter2"})
    r = cfg.alerts.effective.receivers[0]
    assert r.type == "webhook" and r.secret is not None
    assert r.secret.get_secret_value() == "hunter2" and "hunter2" not in repr(cfg)


def test_check_config_command_reports_the_rules_file_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from monitor.cli import main

    rules = tmp_path / "rules.yaml"
    rules.write_text(BAD["min_greater_than_max"][0])
    cfg = tmp_path / "riskwire.yaml"
    cfg.write_text(f"alerts:\n  rules_file: {rules}\n")
    assert main(["check-config", str(cfg)]) == 1
    err = capsys.readouterr()
    assert f"{rules}:5: rules.0.condition.mean_polarity" in err.out + err.err
    good = tmp_path / "good.yaml"
    good.write_text(f"alerts:\n  rules_file: {DEMO}\n")
    assert main(["check-config", str(good)]) == 0
