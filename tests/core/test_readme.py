"""The README's config reference is generated from the config model and must not drift."""

from __future__ import annotations

from pathlib import Path

from monitor.configref import BEGIN, END, render

ROOT = Path(__file__).resolve().parents[2]


def test_readme_config_reference_is_current() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split(BEGIN, 1)[1].split(END, 1)[0]
    assert block.strip() == render().strip(), (
        "README.md's config reference is stale: run `python -m monitor.configref --write README.md`"
    )


def test_reference_lists_nested_keys_with_defaults() -> None:
    table = render()
    assert "| `bus.kafka.bootstrap` |" in table
    assert "| `shutdown.grace_seconds` | float | `10.0` |" in table
