"""`riskwire train|export|eval --help` teaches: every option says what it does, and train and
eval show runnable examples."""

from __future__ import annotations

import argparse

import pytest

from exporters import commands


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = argparse.ArgumentParser(prog="riskwire")
    sub = parser.add_subparsers(dest="command")
    commands.register(sub)
    return dict(sub.choices)


@pytest.mark.parametrize("name", ["train", "export", "eval"])
def test_every_option_has_help(name: str) -> None:
    sub = _subparsers()[name]
    silent = [
        "/".join(a.option_strings) or a.dest
        for a in sub._actions
        if not isinstance(a, argparse._HelpAction) and not (a.help or "").strip()
    ]
    assert silent == [], f"riskwire {name}: options without help: {silent}"
    assert sub.description, f"riskwire {name} has no description"


@pytest.mark.parametrize("name", ["train", "eval"])
def test_help_ends_with_examples_kept_line_by_line(name: str) -> None:
    text = _subparsers()[name].format_help()
    examples = text.split("examples:\n", 1)[1].splitlines()
    assert examples and all(line.startswith(f"  riskwire {name}") for line in examples if line)


def test_train_help_shows_the_recipe_defaults_without_importing_torch() -> None:
    import subprocess
    import sys

    from exporters.recipe import TrainConfig

    recipe = TrainConfig()
    helps = {
        opt: action.help or ""
        for action in _subparsers()["train"]._actions
        for opt in action.option_strings
    }
    for option, value in [
        ("--epochs", f"{recipe.epochs:g}"),
        ("--lr", f"{recipe.lr:g}"),
        ("--max-length", str(recipe.max_length)),
        ("--batch-size", str(recipe.batch_size)),
        ("--seed", str(recipe.seed)),
        ("--max-minutes", f"{recipe.max_minutes:g}"),
    ]:
        assert helps[option].endswith(f"(default {value})"), (option, helps[option])
    # The daemon's CLI builds this parser: it must not drag torch in.
    probe = (
        "import sys, argparse; from exporters import commands; "
        "commands.register(argparse.ArgumentParser().add_subparsers()); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
