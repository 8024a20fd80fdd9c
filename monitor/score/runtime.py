"""Which ONNX Runtime providers and which graph variant to use, decided from data alone.

Kept apart from session creation so that the choice is testable with an injected list of
available providers (there is no GPU in CI): CUDA + fp16 when onnxruntime offers CUDA, else CPU +
int8, else fp32; explicit settings win, and impossible ones are errors that say why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from monitor.errors import ModelError

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


@dataclass(frozen=True)
class RuntimePlan:
    variant: str
    providers: tuple[str, ...]

    @property
    def device(self) -> str:
        return "cuda" if self.providers[0] == CUDA else "cpu"


def select_runtime(
    *,
    variant: str,
    providers: Sequence[str] | None,
    available: Sequence[str],
    variants: Sequence[str],
) -> RuntimePlan:
    """Pick providers (in preference order) and the variant to load.

    ``variant`` is ``auto`` or a variant name; ``providers`` None means "CUDA if available, then
    CPU"; ``available`` is ``onnxruntime.get_available_providers()``; ``variants`` the manifest's.
    """
    if providers is None:
        chosen = [CUDA, CPU] if CUDA in available else [CPU]
    else:
        chosen = [p for p in providers if p in available]
        if not chosen:
            raise ModelError(
                f"none of the configured providers {list(providers)} is available in this "
                f"onnxruntime build (available: {list(available)})"
            )
    if CPU not in chosen:
        # ORT places nodes a provider cannot run on CPU; without it such a graph fails to load.
        chosen.append(CPU)
    on_gpu = chosen[0] == CUDA
    if variant == "auto":
        order = ("fp16", "fp32", "int8") if on_gpu else ("int8", "fp32")
        for name in order:
            if name in variants:
                return RuntimePlan(name, tuple(chosen))
        raise ModelError(
            f"model has no usable variant for {'CUDA' if on_gpu else 'CPU'}: it lists "
            f"{sorted(variants)}, wanted one of {list(order)}"
        )
    if variant not in variants:
        raise ModelError(
            f"score.variant is {variant!r} but the model directory lists only {sorted(variants)}"
        )
    if variant == "fp16" and not on_gpu:
        raise ModelError("score.variant fp16 needs the CUDA provider; on CPU use int8 or fp32")
    return RuntimePlan(variant, tuple(chosen))


def thread_plan(
    *, inference_threads: int, intra_op_threads: int, cpu_count: int, device: str
) -> tuple[int, int]:
    """(inference threads, ORT intra-op threads per inference); 0 means auto for either.

    On CPU, two batches in flight on single-threaded inferences cost less CPU per item than one
    batch on two threads (measured with `riskwire bench score`: no thread handoffs inside small
    GEMMs, and one thread computes while the other builds records), so auto splits the cores.
    """
    cores = max(1, cpu_count)
    if inference_threads == 0:
        inference_threads = 1 if device == "cuda" or cores == 1 else 2
    if intra_op_threads == 0:
        intra_op_threads = max(1, cores // inference_threads)
    return inference_threads, intra_op_threads
