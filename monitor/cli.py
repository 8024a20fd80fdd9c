"""`riskwire` command line. Each command group lives beside the code it drives.

A module named in ``COMMAND_MODULES`` (or ``BENCH_MODULES``) exposes ``register(subparsers)``,
which adds its parsers and sets ``func`` (``args -> exit code``) on each. A module this build does
not have yet is listed with a parser that says so, instead of a fake.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from monitor import __version__

COMMAND_MODULES: dict[str, tuple[str, str]] = {
    # name: (module, one-line help)
    "run": ("monitor.app", "run the daemon (all roles, or --role ...)"),
    "check-config": ("monitor.app", "validate a config file and print the effective config"),
    "feeds": ("monitor.collect.commands", "inspect and test feeds"),
    "replay": ("monitor.replay.commands", "replay history through scoring and rules"),
    "train": ("exporters.commands", "fine-tune the sentiment + risk model"),
    "export": ("exporters.commands", "export a trained model to ONNX and quantize it"),
    "eval": ("exporters.commands", "evaluate a model directory against baselines"),
    "silence": ("monitor.alerts.commands", "add, list and expire alert silences"),
    "alerts": ("monitor.alerts.commands", "list dead-lettered alerts, redeliver them"),
}
BENCH_MODULES: dict[str, tuple[str, str]] = {
    "bus": ("monitor.bench.bus", "bus throughput and latency vs plain kafka-python"),
    "collect": ("monitor.bench.collect", "feed polling vs plain feedparser.parse"),
    "score": ("monitor.bench.score", "scoring throughput and latency vs transformers"),
    "alerts": ("monitor.bench.alerts", "rule evaluation and webhook latency"),
}


def _unavailable(name: str, reason: str) -> Callable[[argparse.Namespace], int]:
    def report(args: argparse.Namespace) -> int:
        print(f"riskwire {name}: not available in this build: {reason}", file=sys.stderr)
        return 2

    return report


def _register(
    subparsers: argparse._SubParsersAction,  # type: ignore[type-arg]
    table: dict[str, tuple[str, str]],
) -> None:
    """Register each module's commands; a missing or broken module leaves a placeholder.

    One broken command module must not take the whole CLI (and so `riskwire run`) down with it.
    """
    for module_name in dict.fromkeys(mod for mod, _ in table.values()):
        reason = ""
        try:
            module = importlib.import_module(module_name)
            register = getattr(module, "register", None)
            if register is None:
                reason = f"{module_name} has no register()"
            else:
                register(subparsers)
                continue
        except ModuleNotFoundError as exc:
            if exc.name is None or not module_name.startswith(exc.name):
                reason = f"{module_name} needs {exc.name!r}, which is not installed"
            else:
                reason = f"{module_name} is not part of this build yet"
        except ImportError as exc:
            reason = f"{module_name} failed to import: {exc}"
        for name, (mod, text) in table.items():
            if mod == module_name:
                p = subparsers.add_parser(name, help=f"{text} [unavailable]")
                p.set_defaults(func=_unavailable(name, reason))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="riskwire",
        description=(
            "Real-time financial news sentiment and risk monitoring. "
            "Start with `riskwire run` (embedded bus, demo feeds) and `riskwire COMMAND --help`."
        ),
    )
    parser.add_argument("--version", action="version", version=f"riskwire {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _register(sub, COMMAND_MODULES)
    bench = sub.add_parser(
        "bench",
        help="benchmarks: ours beside a baseline, medians and ratios",
        description="Benchmarks. Each prints a table; --json adds one JSON object as last line.",
    )
    bench_sub = bench.add_subparsers(dest="bench", metavar="BENCH")
    _register(bench_sub, BENCH_MODULES)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    code: int = func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
