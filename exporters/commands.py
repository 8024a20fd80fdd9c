"""``riskwire train``, ``riskwire export`` and ``riskwire eval``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from exporters.recipe import EXPORT_FIELDS, TrainConfig
from monitor.errors import ConfigError, RiskwireError

DEFAULT_OUT = Path("models/default")

TRAIN_EXAMPLES = """examples:
  riskwire train                                   # the default model into models/default
  riskwire train --out models/mine --sentiment-csv mine.csv --risk-csv my_risk.csv
  riskwire train --out models/quick --layers 2 --limit 300 --epochs 1 --max-length 32
  riskwire train --out models/rd --set rdrop_weight=1.0
  riskwire train --out models/ba --set distill_from=models/default --set distill_alpha=0.5
  riskwire train --out models/enc --set lexical_weight=0   # the encoder alone, no lexical model
"""

EVAL_EXAMPLES = """examples:
  riskwire eval models/default                     # int8, the variant the daemon runs on CPU
  riskwire eval models/default --variant fp32 --json | tail -1 | jq .phrasebank_test.ci95
  riskwire eval models/mine --no-baseline --no-png
  riskwire eval models/mine --against models/default   # is the retrained model better?
"""


def _wrapped(text: str) -> str:
    """A description for the raw formatter (which keeps the examples' lines as written)."""
    return textwrap.fill(text, width=min(100, shutil.get_terminal_size().columns - 2))


def _recipe_override(text: str) -> dict[str, Any]:
    """``FIELD=VALUE`` from ``--set``; VALUE is JSON where it parses, else a plain string."""
    name, sep, raw = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected FIELD=VALUE, got {text!r}")
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return {name.strip(): value}


class _MergeDict(argparse.Action):
    """Repeated ``--set`` options merge into one dict (a later FIELD wins)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        merged = dict(getattr(namespace, self.dest, None) or {})
        merged.update(values)
        setattr(namespace, self.dest, merged)


def train_config(overrides: dict[str, Any]) -> TrainConfig:
    """A validated ``TrainConfig``; every bad field is listed in one ``ConfigError``."""
    from pydantic import ValidationError

    from exporters.train import resolve_precision

    try:
        cfg = TrainConfig(**overrides)
        resolve_precision(cfg.precision)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']} (got {err.get('input')!r})"
            for err in exc.errors()
        ]
        raise ConfigError(problems, source="riskwire train options") from None
    except ValueError as exc:
        raise ConfigError([str(exc)], source="riskwire train options") from None
    return cfg


def _ckpt_dir(out: Path) -> Path:
    # Beside the model directory, not inside it: the manifest hashes every file it holds.
    return out.with_name(out.name + ".ckpt")


def _offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def cmd_train(args: argparse.Namespace) -> int:
    _offline()
    from exporters.pipeline import build_model_dir
    from exporters.train import save_checkpoint, train

    overrides: dict[str, Any] = {
        k: v
        for k, v in {
            "datasets": args.datasets,
            "risk_csv": args.risk_csv,
            "extra_sentiment_csv": args.sentiment_csv,
            "epochs": args.epochs,
            "max_length": args.max_length,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "seed": args.seed,
            "threads": args.threads,
            "max_minutes": args.max_minutes,
            "pooling": args.pooling,
            "layers": args.layers,
            "limit_per_source": args.limit,
            "precision": args.precision,
        }.items()
        if v is not None
    }
    if args.no_twitter:
        overrides["use_twitter"] = False
    overrides.update(args.set or {})
    cfg = train_config(overrides)
    t0 = time.monotonic()
    result = train(cfg, progress=not args.no_progress)
    ckpt = save_checkpoint(result, _ckpt_dir(args.out))
    _say(f"train: checkpoint saved to {ckpt} after {result.seconds / 60:.1f} min")
    manifest = build_model_dir(result, args.out, slow_check=not args.fast_check, report=_say)
    total = time.monotonic() - t0
    _say(f"train: done in {total / 60:.1f} min (train {result.seconds / 60:.1f} min)")
    print(
        json.dumps(
            {
                "model_dir": str(args.out),
                "seconds": round(total, 1),
                "variants": manifest.variants,
                "best_validation": result.best,
            }
        )
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    _offline()
    from exporters.pipeline import build_model_dir
    from exporters.train import load_checkpoint

    overrides: dict[str, Any] = args.set or {}
    problems = [
        f"--set {name}: fixed when the checkpoint was trained; riskwire export can set only "
        f"{', '.join(sorted(EXPORT_FIELDS))}"
        for name in sorted(set(overrides) - EXPORT_FIELDS)
    ]
    try:  # every bad value listed before the checkpoint loads
        train_config({k: v for k, v in overrides.items() if k in EXPORT_FIELDS})
    except ConfigError as exc:
        problems += exc.problems
    if problems:
        raise ConfigError(problems, source="riskwire export options")
    ckpt = args.checkpoint or _ckpt_dir(args.out)
    t0 = time.monotonic()
    result = load_checkpoint(ckpt)
    if overrides:
        cfg = train_config({**result.config.model_dump(), **overrides})
        result = dataclasses.replace(result, config=cfg)
    manifest = build_model_dir(
        result,
        args.out,
        slow_check=not args.fast_check,
        int8=not args.no_int8,
        fp16=not args.no_fp16,
        report=_say,
    )
    print(
        json.dumps(
            {
                "model_dir": str(args.out),
                "seconds": round(time.monotonic() - t0, 1),
                "variants": manifest.variants,
            }
        )
    )
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from exporters.evaluate import evaluate_model_dir

    png_dir = args.png_dir or Path("var/eval") / args.model_dir.name
    providers = (
        ["CUDAExecutionProvider", "CPUExecutionProvider"] if args.cuda else ["CPUExecutionProvider"]
    )
    results = evaluate_model_dir(
        args.model_dir,
        variant=args.variant,
        datasets=args.datasets,
        risk_csv=args.risk_csv,
        png_dir=None if args.no_png else png_dir,
        baseline=not args.no_baseline,
        threads=args.threads,
        providers=providers,
        against=args.against,
    )
    if args.json:
        print(json.dumps(results, default=float))
    return 0


def _guard(func: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            code: int = func(args)
        except RiskwireError as exc:
            print(f"riskwire {args.command}: {exc}", file=sys.stderr)
            return 1
        return code

    return run


def _d(name: str) -> str:
    """'default X' for a recipe field, read from TrainConfig so the help cannot drift."""
    value = TrainConfig.model_fields[name].default
    return f"default {value:g}" if isinstance(value, float) else f"default {value}"


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "train",
        help="fine-tune the sentiment + risk model, export, quantize, write the model directory",
        description=_wrapped(
            "Train on PhraseBank train rows + Twitter train + risk headlines, then export "
            "fp32/int8/fp16 ONNX graphs and manifest.json into --out (what `make model` runs). "
            "Options left out keep the default recipe (exporters/README.md explains each "
            "choice); the checkpoint goes to <out>.ckpt/."
        ),
        epilog=TRAIN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="model directory (default models/default)"
    )
    p.add_argument(
        "--datasets",
        type=Path,
        help="datasets folder (default: $RISKWIRE_DATASETS, else ../shared/datasets beside the "
        "checkout or beside the working copy it was cloned from)",
    )
    p.add_argument(
        "--risk-csv", type=Path, help="risk headlines CSV (id,split,text,tags[,sentiment])"
    )
    p.add_argument("--sentiment-csv", type=Path, help="extra sentiment training CSV (text,label)")
    p.add_argument("--no-twitter", action="store_true", help="train without the Twitter set")
    p.add_argument("--epochs", type=float, help=f"passes over the training rows ({_d('epochs')})")
    p.add_argument(
        "--max-length", type=int, help=f"tokens per text, longer ones cut ({_d('max_length')})"
    )
    p.add_argument("--batch-size", type=int, help=f"rows per step ({_d('batch_size')})")
    p.add_argument("--lr", type=float, help=f"peak lr of the top encoder layer ({_d('lr')})")
    p.add_argument("--seed", type=int, help=f"seed of heads, data slices and order ({_d('seed')})")
    p.add_argument("--threads", type=int, help=f"torch CPU threads ({_d('threads')})")
    p.add_argument(
        "--max-minutes", type=float, help=f"training wall-time budget ({_d('max_minutes')})"
    )
    p.add_argument("--pooling", choices=["mean", "cls"], help=f"sentence pooling ({_d('pooling')})")
    p.add_argument("--layers", type=int, help="truncate the encoder to N layers (quick runs)")
    p.add_argument("--limit", type=int, help="cap rows per source (quick runs)")
    p.add_argument(
        "--precision",
        choices=["auto", "bf16", "fp32"],
        help=f"training matmul precision (auto: bf16 autocast where the CPU has it; "
        f"{_d('precision')})",
    )
    p.add_argument(
        "--set",
        metavar="FIELD=VALUE",
        type=_recipe_override,
        action=_MergeDict,
        help="override any recipe field (VALUE as JSON, else a string), e.g. --set patience=6 "
        "--set 'agreement_weight={\"50\": 0.4}'; repeatable; unknown fields are an error",
    )
    p.add_argument("--fast-check", action="store_true", help="parity check on the fast shapes only")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    p.set_defaults(func=_guard(cmd_train))

    e = subparsers.add_parser(
        "export",
        help="export a trained checkpoint to ONNX (fp32 optimized, int8, fp16) with manifest",
        description="Re-export <out>.ckpt/ (written by `riskwire train`) into --out: the fp32 "
        "graph checked against PyTorch, ONNX Runtime's fused graph, the int8 recipe chosen on "
        "validation, fp16, calibration and manifest.json.",
    )
    e.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="model directory (default models/default)"
    )
    e.add_argument("--checkpoint", type=Path, help="checkpoint dir (default <out>.ckpt)")
    e.add_argument("--fast-check", action="store_true", help="parity check on the fast shapes only")
    e.add_argument("--no-int8", action="store_true", help="skip the int8 variant")
    e.add_argument("--no-fp16", action="store_true", help="skip the fp16 variant")
    e.add_argument(
        "--set",
        metavar="FIELD=VALUE",
        type=_recipe_override,
        action=_MergeDict,
        help="override a recipe field that acts after training (VALUE as JSON): "
        f"{', '.join(sorted(EXPORT_FIELDS))}; e.g. --set memory_weight=0.5 exports the "
        "checkpoint with the nearest-neighbour memory (exporters/README.md)",
    )
    e.set_defaults(func=_guard(cmd_export))

    v = subparsers.add_parser(
        "eval",
        help="evaluate a model directory (ONNX Runtime) against a TF-IDF + LR baseline",
        description=_wrapped(
            "Score one variant of a model directory on the held-out sets (PhraseBank "
            "test rows, all and AllAgree; Twitter sent_valid.csv; risk test split) and print "
            "accuracy, macro-/weighted-F1 with 95% bootstrap intervals, per-class figures, "
            "confusion matrices, ECE with its sampling floor, agreement with fp32, and the same "
            "figures for a TF-IDF + logistic regression baseline trained in the same run."
        ),
        epilog=EVAL_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    v.add_argument("model_dir", type=Path, help="a model directory (manifest.json + graphs)")
    v.add_argument(
        "--variant", choices=["fp32", "int8", "fp16"], default="int8", help="default int8"
    )
    v.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    v.add_argument(
        "--datasets", type=Path, help="datasets folder (default: the model's, else ../shared)"
    )
    v.add_argument("--risk-csv", type=Path, help="risk CSV whose test rows to score")
    v.add_argument(
        "--png-dir", type=Path, help="where confusion-matrix PNGs go (default var/eval/<name>)"
    )
    v.add_argument("--no-png", action="store_true", help="do not save PNGs")
    v.add_argument("--no-baseline", action="store_true", help="skip the TF-IDF + LR baseline")
    v.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads (default 2)")
    v.add_argument("--cuda", action="store_true", help="use the CUDA provider (fp16 variant)")
    v.add_argument(
        "--against",
        type=Path,
        metavar="MODEL_DIR",
        help="also score this model directory (same variant) on the same rows and print each "
        "figure's difference from it with a paired 95%% interval",
    )
    v.set_defaults(func=_guard(cmd_eval))
