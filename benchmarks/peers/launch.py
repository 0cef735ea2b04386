"""What the generation benchmarks share: accel's CLI as a subprocess, the prompts, one engine's worker run.

The calling script stays light (no torch, no runtime): accel resolves and generates in its own
processes, each engine is measured in a fresh process of its own, one at a time (never two engines
at once on the machine's cores), and the caller only blocks on it (it never polls in a loop: a
spinning parent takes a core from the measured child, `notes/benchmark-anchors.md` section 7).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

WORKER = Path(__file__).with_name("worker.py")
ACCEL = Path(sys.executable).with_name("accel")

# A fixed text, so the prompt (and the greedy continuation every engine is compared on) is the same
# from one run and one machine to the next.
PROMPT_TEXT = (
    "The history of computing is a story of machines that became smaller, faster and cheaper while the "
    "problems they were asked to solve grew larger. Early computers filled rooms and were programmed by "
    "rewiring panels; later ones read punched cards, then magnetic tape, then disks. Each generation of "
    "hardware changed what software could do, and each generation of software changed what people "
    "expected from hardware. Today a language model answers questions on a laptop, and the engineer who "
    "deploys it must choose a runtime, a precision and a machine, weighing the time to the first token "
    "against the time per token that follows, and both against the memory the model and its cache take. "
)


def accel_json(*args: str, timeout: float = 3600) -> dict:
    """`accel ARGS --json` in its own process; RuntimeError with its message when it fails."""
    done = subprocess.run([str(ACCEL), *args, "--json"], capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        message = (done.stderr or done.stdout).strip().splitlines()
        raise RuntimeError(f"accel {' '.join(args)}: " + (message[-1] if message else f"exit {done.returncode}"))
    return json.loads(done.stdout)


def prompt_ids(model_dir: Path, tokens: int, batch: int, vocab_size: int) -> list[list[int]]:
    """`batch` prompts of exactly `tokens` ids (no padding, so every engine sees the same shapes).

    The model's own tokenizer on the fixed text, each row starting one sentence later; seeded random
    ids where the model folder has no tokenizer.json (the tiny random models' text means nothing anyway).
    """
    tokenizer_file = model_dir / "tokenizer.json"
    if not tokenizer_file.is_file():
        rng = np.random.default_rng(0)
        return rng.integers(3, vocab_size, size=(batch, tokens)).tolist()
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    sentences = PROMPT_TEXT.split(". ")
    rows = []
    for row in range(batch):
        text = ". ".join(sentences[row:] + sentences[:row])
        ids: list[int] = []
        while len(ids) < tokens:
            ids += tokenizer.encode(text, add_special_tokens=False).ids
        rows.append(ids[:tokens])
    return rows


def run_worker(python: Path, spec: dict, timeout: float) -> dict:
    """One engine measured by worker.py under `python`; its result, or an error result saying why."""
    env = os.environ | {
        "OMP_NUM_THREADS": str(spec["threads"]),
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONWARNINGS": "ignore",
    }
    with tempfile.TemporaryDirectory(prefix="accel-peer-") as work:
        spec_file, out_file, log_file = (Path(work) / name for name in ("spec.json", "out.json", "log.txt"))
        spec_file.write_text(json.dumps(spec))
        try:
            with open(log_file, "w") as log:
                done = subprocess.run(
                    [str(python), str(WORKER), str(spec_file), str(out_file)],
                    stdout=log, stderr=subprocess.STDOUT, env=env, timeout=timeout,
                )  # fmt: skip
        except subprocess.TimeoutExpired:
            return {"engine": spec["name"], "status": "error", "error": f"did not finish within {timeout:.0f} s"}
        if out_file.is_file():
            return json.loads(out_file.read_text())
        tail = [line for line in log_file.read_text().splitlines() if line.strip()][-5:]
        error = f"worker exited {done.returncode}: " + " | ".join(tail)
        return {"engine": spec["name"], "status": "error", "error": error}
