"""What does the skill wrapper cost? Its call against the bare runtime call it wraps, side by side.

MiniLM, batch 8, seq 128, on cpu/torch (the exported module), cpu/onnxruntime (session.run) and
cpu/openvino (infer request). Blocks of calls alternate skill / bare in one process. Goal: within 2%.

    .venv/bin/python benchmarks/skill_overhead.py [--blocks 6] [--calls 10] [--threads 2]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
from functools import partial

from _common import MINILM, machine_load

from accel.tasks.generate import generate


def bare_call(skill, module, inputs):
    backend = skill._backend
    if module.TARGET.startswith("cpu/torch"):
        import torch

        tensors = {k: torch.from_numpy(v) for k, v in inputs.items()}

        def call():
            with torch.inference_mode():
                return backend.module(**tensors)

        return call
    if "onnxruntime" in module.TARGET:
        return lambda: backend.session.run(None, inputs)
    return lambda: backend.request.infer(inputs)


def timed(call, calls: int) -> float:
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--blocks", type=int, default=6)
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    print(f"MiniLM batch 8 seq 128, {args.threads} threads; {machine_load()}")
    for target in ("cpu/torch", "cpu/onnxruntime", "cpu/openvino"):
        path = generate(MINILM, target).path
        spec = importlib.util.spec_from_file_location(f"skill_{target.replace('/', '_')}", path / "skill.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        skill = module.Skill(threads=args.threads).load()
        inputs = skill.make_inputs(8, 128, seed=0)
        bare = bare_call(skill, module, inputs)
        for _ in range(3):
            skill(inputs)
            bare()
        wrapped, raw = [], []
        call_skill = partial(skill, inputs)
        for _ in range(args.blocks):
            wrapped.append(timed(call_skill, args.calls))
            raw.append(timed(bare, args.calls))
        overhead = statistics.median(wrapped) / statistics.median(raw) - 1
        print(
            f"{target:16} skill {statistics.median(wrapped):8.2f} ms  bare {statistics.median(raw):8.2f} ms  "
            f"overhead {overhead:+.2%} ({'within' if abs(overhead) <= 0.02 else 'outside'} the 2% goal)"
        )
        skill.close()
    print(machine_load())


if __name__ == "__main__":
    main()
