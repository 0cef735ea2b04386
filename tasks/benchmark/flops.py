"""FLOPs of one forward call, counted on the reference model in a process of its own.

`python -m accel.tasks.benchmark.flops SKILL_DIR SHAPES_JSON --report-fd N` (started by tasks/isolated)
builds accel's reference model for the skill (tasks/reference) with eager attention, so the attention
products are plain matmuls that torch's FlopCounterMode counts (fused SDPA kernels may go uncounted),
runs one forward per (batch, seq) under the counter, smallest first, and reports one JSON line per shape
as it is counted. A shape too large for this machine kills that process, not the benchmark: the shapes
counted before it keep their count, the rest stay unknown (never guessed), with the reason.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from accel.tasks import isolated
from accel.tasks.reference import REFERENCE_PRELOAD

BASIS = (
    "torch.utils.flop_counter.FlopCounterMode on the transformers reference model, eager attention, fp32: "
    "matrix products and convolutions at 2 FLOPs per multiply-add (attention scores and values included); "
    "softmax, normalisation, activations and embeddings lookups not counted"
)
FALLBACK_BASIS = BASIS.replace(
    "eager attention", "default attention (eager was refused: fused attention may be uncounted)"
)


def _size(shape: list) -> int:
    return int(shape[0]) * int(shape[1] or 1)


def count_flops(
    skill_dir: Path, shapes: list[tuple[int, int | None]], timeout_s: float = 600.0
) -> tuple[dict[tuple[int, int | None], float | None], str]:
    """FLOPs per (batch, seq), and the basis of the count (or why some are unknown)."""
    found: dict[tuple[int, int | None], float | None] = dict.fromkeys(shapes)
    if not shapes:
        return found, BASIS
    basis = BASIS
    argv = [str(skill_dir), json.dumps(shapes)]
    with isolated.start("accel.tasks.benchmark.flops:main", argv, REFERENCE_PRELOAD) as process:
        for item in process.events(timeout_s):
            if "basis" in item:
                basis = item["basis"]
            else:
                found[(item["batch"], item["seq"])] = item["flops"]
        if process.timed_out:
            process.kill()
        code = None if process.timed_out else process.wait()
        tail = " / ".join(process.tail(2))
    missing = [s for s, v in found.items() if v is None]
    if missing:
        why = f"timed out after {timeout_s:.0f} s" if code is None else isolated.describe_exit(code)
        basis += f". Not counted for {missing}: the counting process {why}. {tail}".rstrip()
    return found, basis


def main(argv: list[str] | None = None) -> int:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from accel.tasks.manifest import read_manifest
    from accel.tasks.model_lock import MODEL_LOADING
    from accel.tasks.reference import pristine_module

    parser = argparse.ArgumentParser(prog="accel.tasks.benchmark.flops")
    parser.add_argument("skill_dir")
    parser.add_argument("shapes", help="[[batch, seq], ...] as JSON")
    parser.add_argument("--report-fd", type=int, required=True)
    args = parser.parse_args(argv)
    skill_dir, shapes = args.skill_dir, args.shapes
    report = os.fdopen(args.report_fd, "w", buffering=1)
    manifest: dict[str, Any] = read_manifest(Path(skill_dir))
    pristine = pristine_module(manifest)
    with MODEL_LOADING:
        try:
            reference, basis = pristine.build_reference(attn_implementation="eager"), BASIS
        except (ValueError, TypeError):  # a model with no eager path
            reference, basis = pristine.build_reference(), FALLBACK_BASIS
    report.write(json.dumps({"basis": basis}) + "\n")
    for batch, seq in sorted(json.loads(shapes), key=_size):
        feeds = pristine.make_inputs(batch, seq, 0)
        tensors = {k: torch.from_numpy(v) for k, v in feeds.items()}
        counter = FlopCounterMode(display=False)
        with counter, torch.inference_mode():
            reference(**tensors)
        report.write(json.dumps({"batch": batch, "seq": seq, "flops": float(counter.get_total_flops())}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
