"""Per-token decode time as the output grows: 16, 64 and 256 new tokens per skill, and the ratio 256/16.

With a KV cache each step feeds one token and reads the cache, so the time per output token stays
about flat (ratio close to 1); without one every step runs the whole sequence again and the ratio
grows with the length. Each of accel's skills (cpu/torch, cpu/onnxruntime, cpu/openvino by
default) and transformers' own `generate` with its cache (the flat reference) are measured in a
fresh process of their own, one after the other. TPOT is (whole generation - 1-token generation) /
(new tokens - 1); where the skill has prefill/decode (contract C2), the mean time of one
Skill.decode call is printed beside it.

The default model is the tests' tiny random Llama with its positions raised to 1024 (so a 256-token
output fits; RoPE has no position table, so nothing else changes), built once under
$ACCEL_HOME/cache/peers/. `--model HuggingFaceTB/SmolLM2-135M-Instruct` measures the real one.

    .venv/bin/python benchmarks/decode_flatness.py [--model REF] [--targets cpu/onnxruntime] [--new-tokens 16,64,256]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from _common import machine_load
from peers.launch import accel_json, prompt_ids, run_worker

ROOT = Path(__file__).resolve().parents[1]
TARGETS = "cpu/torch,cpu/onnxruntime,cpu/openvino"


def tiny_llama(home: Path) -> Path:
    """The tests' tiny Llama with 1024 positions, built once (seeded, so the same weights every time)."""
    folder = home / "cache" / "peers" / "tiny-llama-1024"
    if not (folder / "llama" / "config.json").is_file():
        sys.path.insert(0, str(ROOT))  # tests.tiny_models builds it
        from tests.tiny_models import build_tiny_models

        path = build_tiny_models(folder, ["llama"])["llama"]
        config = json.loads((path / "config.json").read_text())
        config["max_position_embeddings"] = 1024
        (path / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return folder / "llama"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model ref (default: the tiny random Llama, 1024 positions)")
    parser.add_argument("--targets", default=TARGETS, help="comma-separated accel targets")
    parser.add_argument("--new-tokens", default="16,64,256")
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--no-reference", action="store_true", help="leave out transformers' generate")
    parser.add_argument("--regenerate", action="store_true", help="generate the skills again (accel --force)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds one engine's worker may take")
    args = parser.parse_args()
    counts = [int(n) for n in args.new_tokens.split(",")]

    from accel.settings import get_settings

    print(machine_load())
    ref = args.model or str(tiny_llama(get_settings().home))
    model = accel_json("models", "resolve", ref)
    folder = Path(model["path"])
    vocab = json.loads((folder / "config.json").read_text())["vocab_size"]
    prompts = {str(args.batch): prompt_ids(folder, args.prompt_tokens, args.batch, vocab)}
    print(
        f"model {model['ref']} ({model['architecture']}, {model['parameters_human']} parameters); prompt "
        f"{args.prompt_tokens} tokens, batch {args.batch}, {counts} new tokens forced, {args.threads} threads"
    )
    engines = [] if args.no_reference else [("transformers", "transformers", folder)]
    for target in [t.strip() for t in args.targets.split(",") if t.strip()]:
        try:
            skill = accel_json("generate", ref, "--target", target, *(["--force"] if args.regenerate else []))
            engines.append((f"accel {target}", "accel", Path(skill["path"])))
        except Exception as error:
            print(f"accel {target}: FAILED to generate: {error}")
    generation = json.loads((folder / "generation_config.json").read_text())
    pad = generation.get("pad_token_id", generation.get("eos_token_id", 0))
    rows = []
    for name, worker, path in engines:
        spec = {
            "engine": worker,
            "name": name,
            "model_dir": str(path),
            "threads": args.threads,
            "prompts": prompts,
            "new_tokens": counts,
            "iterations": args.iterations,
            "no_cache_iterations": 1,
            "pad_token_id": pad[0] if isinstance(pad, list) else pad,
        }
        print(f"{name}: measuring ({machine_load()})", flush=True)
        result = run_worker(Path(sys.executable), spec, args.timeout)
        result["load"] = os.getloadavg()[0]
        rows.append(result)
        if result["status"] != "ok":
            print(f"{name}: FAILED: {result['error']}", flush=True)

    first, last = counts[0], counts[-1]
    print()
    header = " | ".join(f"TPOT ms @{n}" for n in counts)
    print(f"| engine | cache | {header} | ratio {last}/{first} | decode call ms @{first} / @{last} | load (1 min) |")
    print("| --- | --- | " + " | ".join("---" for _ in counts) + " | --- | --- | --- |")
    for result in rows:
        if result["status"] != "ok":
            continue
        by_count = {row["new_tokens"]: row for row in result["rows"]}
        tpot = [by_count[n]["tpot_ms"] if n in by_count else float("nan") for n in counts]
        calls = [by_count.get(n, {}).get("decode_call_ms") for n in (first, last)]
        call_text = f"{calls[0]:.3f} / {calls[1]:.3f}" if None not in calls else "-"
        cache = "yes" if result["cache"] else "no cache"
        print(
            f"| {result['engine']} | {cache} | " + " | ".join(f"{t:.3f}" for t in tpot)
            + f" | {tpot[-1] / tpot[0]:.2f} | {call_text} | {result['load']:.2f} |"
        )  # fmt: skip
    for result in rows:
        if result["status"] == "ok" and any(row["new_tokens"] not in counts for row in result["rows"]):
            print(f"- {result['engine']}: stopped early at eos in some rows (fewer tokens than asked)")
    print(machine_load())


if __name__ == "__main__":
    main()
