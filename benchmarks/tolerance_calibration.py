"""Measure the fp32 differences the tolerances must allow, over the tiny-model zoo and MiniLM, per runtime.

    python benchmarks/tolerance_calibration.py [--models bert,gpt2] [--targets cpu/torch] [--no-minilm]

For each model (tests/tiny_models.py, the wider zoo of tests/tiny_zoo.py, MiniLM) x CPU runtime
it generates the skill (offline; the tiny models are built like the tests build them) and runs the
test stage's own comparisons in this process with no tolerance at all. Each cell is the largest
|skill - reference| one comparison saw, and in brackets the same relative to the output's largest
|value| (the scale the tolerance is relative to): the generator's validation, parity, batch
invariance, padding invariance and real input. `max |ref|` is the largest output value on parity's
first input: outputs x1.001 fail parity when 1e-3 x it exceeds the tolerance's limit for it.
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


def measure(model_ref: str, target: str, out_dir: Path) -> dict[str, str]:
    from accel.tasks import generate as generate_module
    from accel.tasks.check_context import Context
    from accel.tasks.checks import run_check
    from accel.tasks.generate import generate
    from accel.tasks.manifest import load_manifest
    from accel.tasks.reference import pristine_module
    from accel.tasks.tolerances import Tolerance

    unbounded = Tolerance(atol=float("inf"), rtol=0.0)
    # The generator validates with the very tolerance being calibrated: measure with none.
    generate_module.tolerance_for = lambda *_: unbounded
    skill = generate(model_ref, target, out_dir=out_dir)
    manifest = load_manifest(skill.path)
    ctx = Context(
        skill_path=skill.path,
        pristine=pristine_module(manifest),
        manifest=manifest,
        tolerance=unbounded,
    )
    validation = manifest.validation
    row: dict[str, str] = {"generator": _cell(validation.get("max_abs_diff"), validation.get("max_rel_diff"))}
    for name in ("loads", *MEASURED):
        result = run_check(name, ctx)
        if name != "loads":
            row[name] = _cell(result.max_abs_diff, result.max_rel_diff) if result.status == "passed" else "-"
        elif result.status != "passed":
            raise RuntimeError(f"{model_ref} on {target}: loads {result.status}: {result.message}")
    inputs = ctx.inputs(1, ctx.lengths()[0], 21)  # parity's first input
    row["max |ref|"] = f"{max(float(np.abs(v).max()) for v in ctx.reference(inputs).values()):.2g}"
    ctx.skill.close()
    return row


def _cell(absolute: float | None, relative: float | None) -> str:
    if absolute is None:
        return "-"
    return f"{absolute:.2g} ({relative:.2g})" if relative is not None else f"{absolute:.2g}"


def main() -> int:
    from tests.tiny_models import TINY_MODELS, build_tiny_models
    from tests.tiny_zoo import ZOO_MODELS, build_zoo_model

    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default=",".join([*TINY_MODELS, *ZOO_MODELS]))
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--no-minilm", action="store_true")
    parser.add_argument("--work", type=Path, help="where models and skills go (default: a new temporary folder)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="accel-calibration-"))
    os.environ.setdefault("ACCEL_HOME", str(work / "home"))
    names = [n for n in args.models.split(",") if n]
    tiny = [n for n in names if n in TINY_MODELS]
    models = {n: str(p) for n, p in build_tiny_models(work / "tiny", tiny).items()} if tiny else {}
    models.update({n: str(build_zoo_model(work / "zoo", n)) for n in names if n in ZOO_MODELS})
    if not args.no_minilm:
        models["minilm"] = MINILM
    columns = ("generator", *MEASURED, "max |ref|")
    print("| model | family | target | " + " | ".join(columns) + " |")
    print("|" + " --- |" * (3 + len(columns)))
    for name, ref in models.items():
        spec = TINY_MODELS.get(name) or ZOO_MODELS.get(name)
        family = spec.family if spec else "text-encoder"
        for target in args.targets.split(","):
            try:
                row = measure(ref, target, work / "skills")
            except Exception as err:  # refused at resolve, or no exporter matched: say so, go on
                print(f"| {name} | {family} | {target} | not generated: {type(err).__name__}: {str(err)[:150]} |")
                continue
            cells = " | ".join(row[c] for c in columns)
            print(f"| {name} | {family} | {target} | {cells} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
