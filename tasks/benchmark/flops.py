"""FLOPs of one forward call, counted on the reference model in a process of its own.

`python -m accel.tasks.benchmark.flops SKILL_DIR SHAPES_JSON --report-fd N` (started by tasks/isolated)
builds accel's reference model for the skill (tasks/reference) with eager attention, so the attention
products are plain matmuls that torch's FlopCounterMode counts (fused SDPA kernels may go uncounted),
runs one forward per (batch, seq) under the counter, smallest first, and reports one JSON line per shape
as it is counted. A shape too large for this machine kills that process, not the benchmark: the shapes
counted before it keep their count, the rest stay unknown (never guessed), with the reason.

Counts are kept per skill in `$ACCEL_HOME/cache/flops/<skill_id>.json` (with the basis and torch's
version, which a count depends on): benchmarking a skill again counts only the shapes it has not
counted yet, so a reused skill skips the process, and the load of its reference model, entirely.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import sys
from pathlib import Path
from typing import Any

from accel.tasks import isolated
from accel.tasks.model_files import load_json_cache, save_json_cache
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
    cache_file = _cache_file(Path(skill_dir))
    cached = _read_cache(cache_file)
    basis = cached.get("basis", BASIS)
    found.update({s: cached["counts"][_key(s)] for s in shapes if _key(s) in cached.get("counts", {})})
    todo = [s for s, v in found.items() if v is None]
    if not todo:
        return found, basis
    argv = [str(skill_dir), json.dumps(todo)]
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
    counted = {_key(s): found[s] for s in todo if found[s] is not None}
    if counted and cached.get("basis", basis) == basis and cache_file is not None:
        counts = {**cached.get("counts", {}), **counted}
        save_json_cache(cache_file, {"torch": _torch_version(), "basis": basis, "counts": counts})
    missing = [s for s, v in found.items() if v is None]
    if missing:
        why = f"timed out after {timeout_s:.0f} s" if code is None else isolated.describe_exit(code)
        basis += f". Not counted for {missing}: the counting process {why}. {tail}".rstrip()
    return found, basis


def _key(shape: tuple[int, int | None]) -> str:
    return f"{shape[0]}x{shape[1]}"


def _torch_version() -> str | None:
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return None


def _cache_file(skill_dir: Path) -> Path | None:
    """Where this skill's counts are kept, or None for a folder without a readable skill id."""
    from accel.settings import get_settings
    from accel.tasks.manifest import read_manifest

    try:
        skill_id = read_manifest(skill_dir)["skill_id"]
    except Exception:  # no manifest, or not a valid one: nothing is cached for it
        return None
    if not isinstance(skill_id, str) or not skill_id.isalnum():  # a file name, never a path
        return None
    return get_settings().cache_dir / "flops" / f"{skill_id}.json"


def _read_cache(cache_file: Path | None) -> dict[str, Any]:
    """The counts kept for this skill by the torch installed now ({} when none, or from another torch)."""
    cached = load_json_cache(cache_file) if cache_file is not None and cache_file.is_file() else {}
    if cached.get("torch") != _torch_version() or cached.get("basis") is None:
        return {}
    counts = cached.get("counts")
    if not isinstance(counts, dict) or not all(isinstance(v, (int, float)) and v >= 0 for v in counts.values()):
        return {}
    return cached


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
