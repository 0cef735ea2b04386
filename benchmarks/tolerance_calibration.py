"""Measure the fp32 differences the tolerances must allow, over the tiny-model zoo and MiniLM, per runtime.

    python benchmarks/tolerance_calibration.py [--models bert,gpt2] [--targets cpu/torch] [--no-minilm]

For each model x CPU runtime it generates the skill (offline; the tiny models are built like the
tests build them) and runs the test stage's own comparisons in this process with no tolerance at
all, printing the largest |skill - reference| each one saw: the generator's validation, parity,
batch invariance, padding invariance and real input. The last column, `x1.001 caught below`, is the
largest atol at which a skill whose outputs are all scaled by 1.001 still fails parity
((1e-3 - rtol) x max |reference|): the chosen atol must sit between the largest difference and it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.tiny_models

import numpy as np

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
TARGETS = ("cpu/torch", "cpu/onnxruntime", "cpu/openvino")
MEASURED = ("parity", "batch_invariance", "padding_invariance", "real_input")


def measure(model_ref: str, target: str, out_dir: Path) -> dict[str, float | None]:
    from accel.tasks.check_context import Context
    from accel.tasks.checks import run_check
    from accel.tasks.generate import generate
    from accel.tasks.manifest import load_manifest
    from accel.tasks.reference import pristine_module
    from accel.tasks.tolerances import FP32_RTOL, Tolerance

    skill = generate(model_ref, target, out_dir=out_dir)
    manifest = load_manifest(skill.path)
    ctx = Context(
        skill_path=skill.path,
        pristine=pristine_module(manifest),
        manifest=manifest,
        tolerance=Tolerance(atol=float("inf"), rtol=0.0),
    )
    row: dict[str, float | None] = {"generator": manifest.validation.get("max_abs_diff")}
    for name in ("loads", *MEASURED):
        result = run_check(name, ctx)
        if name != "loads":
            row[name] = result.max_abs_diff if result.status == "passed" else None
        elif result.status != "passed":
            raise RuntimeError(f"{model_ref} on {target}: loads {result.status}: {result.message}")
    seq = ctx.lengths()[0]
    inputs = ctx.inputs(1, seq, 21)  # parity's first input
    largest = max(float(np.abs(v).max()) for v in ctx.reference(inputs).values())
    row["x1.001 caught below"] = (1e-3 - FP32_RTOL) * largest
    ctx.skill.close()
    return row


def main() -> int:
    from tests.tiny_models import TINY_MODELS, build_tiny_models

    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default=",".join(TINY_MODELS))
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--no-minilm", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="accel-calibration-"))
    os.environ.setdefault("ACCEL_HOME", str(work / "home"))
    names = [n for n in args.models.split(",") if n]
    models = {n: str(p) for n, p in build_tiny_models(work / "tiny", names).items()}
    if not args.no_minilm:
        models["minilm"] = MINILM
    columns = ("generator", *MEASURED, "x1.001 caught below")
    print("| model | family | target | " + " | ".join(columns) + " |")
    print("|" + " --- |" * (3 + len(columns)))
    for name, ref in models.items():
        family = TINY_MODELS[name].family if name in TINY_MODELS else "text-encoder"
        for target in args.targets.split(","):
            row = measure(ref, target, work / "skills")
            cells = " | ".join("-" if row[c] is None else f"{row[c]:.2g}" for c in columns)
            print(f"| {name} | {family} | {target} | {cells} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
