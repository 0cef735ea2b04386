"""Greedy generation side by side, LLM-Perf leaderboard style: accel's skills against the peers of their runtime.

One model (SmolLM2-135M-Instruct by default, resolved through accel), one prompt (256 tokens, batch 1;
`--batches 1,4`), exactly 64 new tokens forced, the same threads, every engine in one run, each in a
fresh process of its own, one after the other:

- transformers' own `generate` with its KV cache (eager torch, fp32), this venv: the token reference;
- onnxruntime-genai on the folder its model builder makes (fp32, cpu), in a venv of its own;
- openvino-genai's LLMPipeline on the stateful OpenVINO IR optimum-intel exports (fp32), twice: its
  stateful SDPA backend and its paged-attention backend (prefix caching off, or every repeat of the
  prompt skips its prefill); and optimum-intel's OVModelForCausalLM.generate on the same IR; in a
  venv of their own (optimum-intel needs transformers<5.6);
- accel's skills of the model: cpu/torch, cpu/onnxruntime, cpu/openvino (`accel generate`), driven
  through Skill.generate (min_new_tokens, contract C2).

Printed per engine and batch: time to first token, time per output token, tokens/s, peak RSS, TPOT
against the best peer of the same runtime and against transformers, whether the greedy tokens equal
transformers', and the load average. An engine that cannot be installed, converted or run is printed
with its error. Peer venvs land under $ACCEL_HOME/cache/peer-venvs, converted models under
$ACCEL_HOME/cache/peers/<revision>/ (made once; the first run takes several minutes for them).

`--paired-turns N` then measures each skill against each peer of its runtime once more, both loaded in
one process (the peer's venv; a skill needs only numpy and its runtime) and timed in N alternating turns:
the median ratio of the turns, which the drift in this machine's speed between the engines' processes
(10-25% over minutes on a shared VM) does not reach.

    .venv/bin/python benchmarks/generation_peers.py [--model REF] [--batches 1,4] [--engines a,b] [--paired-turns 4]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from _common import machine_load
from peers.convert import CONVERSIONS, convert
from peers.launch import accel_json, prompt_ids, run_worker
from peers.venvs import ensure_venv, peer_venvs

SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
OV_IR = "openvino-ir-fp32"


@dataclass(frozen=True)
class Engine:
    name: str
    worker: str  # the worker's engine class
    runtime: str
    peer: bool
    form: str  # "hf", a CONVERSIONS key, or "skill:<target>"
    options: dict = field(default_factory=dict)


ENGINES = (
    Engine("transformers", "transformers", "torch", True, "hf"),
    Engine("accel cpu/torch", "accel", "torch", False, "skill:cpu/torch"),
    Engine("onnxruntime-genai", "onnxruntime-genai", "onnxruntime", True, "ort-genai-fp32-cpu"),
    Engine("accel cpu/onnxruntime", "accel", "onnxruntime", False, "skill:cpu/onnxruntime"),
    Engine("openvino-genai sdpa", "openvino-genai", "openvino", True, OV_IR, {"attention_backend": "SDPA"}),
    Engine("openvino-genai pa", "openvino-genai", "openvino", True, OV_IR, {"attention_backend": "PA"}),
    Engine("optimum-intel", "optimum-intel", "openvino", True, OV_IR),
    Engine("accel cpu/openvino", "accel", "openvino", False, "skill:cpu/openvino"),
)


def prepare(engine: Engine, model: dict, home: Path, ready: dict, regenerate: bool) -> tuple[Path, Path, str]:
    """(python, model folder, what preparing it took) for `engine`; raises with the reason it cannot run."""
    if engine.form == "hf":
        return Path(sys.executable), Path(model["path"]), "-"
    if engine.form.startswith("skill:"):
        target = engine.form.removeprefix("skill:")
        started = time.perf_counter()
        skill = accel_json("generate", model["ref"], "--target", target, *(["--force"] if regenerate else []))
        took = "reused" if skill.get("reused") else f"generated in {time.perf_counter() - started:.0f} s"
        return Path(sys.executable), Path(skill["path"]), f"skill {took}"
    conversion = CONVERSIONS[engine.form]
    if conversion.venv not in ready:  # one venv serves several engines: make (or check) it once
        try:
            ready[conversion.venv] = ensure_venv(peer_venvs()[conversion.venv], home / "cache" / "peer-venvs")
        except Exception as error:
            ready[conversion.venv] = error
    venv = ready[conversion.venv]
    if isinstance(venv, Exception):
        raise RuntimeError(f"the {conversion.venv} venv could not be made: {venv}")
    made = convert(conversion, venv.python, Path(model["path"]), model["revision"], home / "cache" / "peers")
    what = (
        f"{conversion.venv} venv {'made now' if venv.made_now else 'reused'} ({venv.install_s:.0f} s to install, "
        f"{venv.size_mib:.0f} MiB); {conversion.form} {'converted now' if made.made_now else 'cached'} "
        f"({made.seconds:.0f} s to convert, {made.size_mib:.0f} MiB)"
    )
    return venv.python, made.path, what


def merge_rounds(rounds: list[dict]) -> dict:
    """One engine's rounds as one result: medians of the per-round figures, the highest peak RSS."""
    ok = [r for r in rounds if r["status"] == "ok"]
    if not ok:
        return rounds[0]
    merged = dict(ok[0], rounds=len(ok), load=statistics.fmean(r["load"] for r in ok))
    if len(ok) < len(rounds):
        merged["notes"] = [*merged.get("notes", []), f"{len(rounds) - len(ok)} of {len(rounds)} rounds failed"]
    merged["rows"] = []
    for index, row in enumerate(ok[0]["rows"]):
        same = [r["rows"][index] for r in ok]
        merged["rows"].append(
            row
            | {key: round(statistics.median(x[key] for x in same), 3) for key in ("ttft_ms", "e2e_ms", "tpot_ms")}
            | {
                "tokens_per_s": round(statistics.median(x["tokens_per_s"] for x in same), 2),
                "peak_rss_mib": max(x["peak_rss_mib"] for x in same),
                "tpot_rounds_ms": [x["tpot_ms"] for x in same],
            }
        )
    return merged


def compare_tokens(tokens: list[list[int]], reference: list[list[int]] | None) -> str:
    if reference is None:
        return "no reference"
    for row, (mine, theirs) in enumerate(zip(tokens, reference, strict=False)):
        for step, (a, b) in enumerate(zip(mine, theirs, strict=False)):
            if a != b:
                return f"differs at step {step}" + (f" (row {row})" if len(reference) > 1 else "")
        if len(mine) != len(theirs):
            return f"{len(mine)} tokens against {len(theirs)}"
    return "equal"


def print_table(results: list[dict], engines: dict[str, Engine]) -> None:
    ok = [r for r in results if r["status"] == "ok"]
    reference = next((r for r in ok if r["engine"] == "transformers"), None)
    print()
    print(
        "| engine | runtime | cache | batch | TTFT ms | TPOT ms | tokens/s | peak RSS MiB | TPOT / best peer "
        "(same runtime) | TPOT / transformers | tokens vs transformers | load (1 min) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for result in ok:
        for row in result["rows"]:
            peers = [
                p
                for p in ok
                if engines[p["engine"]].peer and engines[p["engine"]].runtime == engines[result["engine"]].runtime
            ]
            same = [next(x for x in p["rows"] if x["batch"] == row["batch"])["tpot_ms"] for p in peers]
            best = min(same) if same else None
            ref_row = next((x for x in reference["rows"] if x["batch"] == row["batch"]), None) if reference else None
            vs_best = f"{row['tpot_ms'] / best:.2f}" if best else "-"
            vs_torch = f"{row['tpot_ms'] / ref_row['tpot_ms']:.2f}" if ref_row else "-"
            tokens = compare_tokens(row["tokens"], ref_row["tokens"] if ref_row else None)
            cache = "yes" if result["cache"] else "no cache"
            print(
                f"| {result['engine']} | {engines[result['engine']].runtime} | {cache} | {row['batch']} | "
                f"{row['ttft_ms']:.1f} | {row['tpot_ms']:.2f} | {row['tokens_per_s']:.1f} | "
                f"{row['peak_rss_mib']:.0f} | "
                f"{vs_best} | {vs_torch} | {tokens} | {result['load']:.2f} |"
            )
    for result in results:
        if result["status"] != "ok":
            print(f"- {result['engine']}: FAILED: {result['error']}")
    print()
    for result in ok:
        versions = ", ".join(f"{k} {v}" for k, v in result.get("versions", {}).items())
        notes = "; ".join(result.get("notes", []))
        if result.get("rounds", 1) > 1:
            spread = ", ".join(f"b{row['batch']} {row['tpot_rounds_ms']}" for row in result["rows"])
            notes += f"; TPOT ms per round: {spread}"
        print(f"- {result['engine']}: loaded in {result['load_s']:.1f} s; {result['prepared']}; {versions}; {notes}")


def print_goals(results: list[dict], engines: dict[str, Engine]) -> None:
    """Issue 14's goals: each skill's TPOT within 10% of the best peer of its runtime, ORT and OV faster than torch."""
    ok = {r["engine"]: r for r in results if r["status"] == "ok"}
    print()
    for name, result in ok.items():
        engine = engines[name]
        if engine.peer:
            continue
        for row in result["rows"]:
            peers = [
                (p, next(x for x in ok[p]["rows"] if x["batch"] == row["batch"])["tpot_ms"])
                for p in ok
                if engines[p].peer and engines[p].runtime == engine.runtime
            ]
            if peers:
                best_name, best = min(peers, key=lambda pair: pair[1])
                verdict = "met" if row["tpot_ms"] <= 1.10 * best else "not met"
                print(
                    f"goal: {name} b{row['batch']} TPOT {row['tpot_ms']:.2f} ms within 10% of the best "
                    f"{engine.runtime} peer ({best_name} {best:.2f} ms): {verdict}"
                )
            torch_row = ok.get("transformers")
            if engine.runtime != "torch" and torch_row:
                ref = next(x for x in torch_row["rows"] if x["batch"] == row["batch"])["tpot_ms"]
                verdict = "met" if row["tpot_ms"] < ref else "not met"
                print(f"goal: {name} b{row['batch']} faster than eager torch ({ref:.2f} ms): {verdict}")


def measure_paired(
    chosen: list[str], engines: dict[str, Engine], prepared: dict, prompts: dict, pad: int, args
) -> list:
    """Each skill against each peer of its runtime, the two in one process of the peer's python."""
    results = []
    for skill in (n for n in chosen if not engines[n].peer and not isinstance(prepared[n], Exception)):
        for peer in chosen:
            if not engines[peer].peer or engines[peer].runtime != engines[skill].runtime:
                continue
            if isinstance(prepared[peer], Exception):
                continue
            specs = [
                {
                    "engine": engines[name].worker,
                    "name": name,
                    "model_dir": str(prepared[name][1]),
                    "threads": args.threads,
                    "pad_token_id": pad,
                    **engines[name].options,
                }
                for name in (peer, skill)
            ]
            spec = {
                "name": f"{skill} / {peer}",
                "threads": args.threads,
                "paired": specs,
                "prompts": prompts,
                "new_tokens": args.new_tokens,
                "turns": args.paired_turns,
            }
            print(f"paired, {skill} / {peer}: measuring ({machine_load()})", flush=True)
            results.append(run_worker(prepared[peer][0], spec, args.timeout) | {"skill": skill, "peer": peer})
    return results


def print_paired(pairs: list[dict]) -> None:
    """The paired table, and the goal read from it: within 10% of every peer of the runtime (so of the best)."""
    print("\n| skill | peer | batch | turns | peer TPOT ms | skill TPOT ms | skill / peer (median of turns) | range |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    worst: dict[tuple[str, int], tuple[float, str]] = {}
    for pair in pairs:
        if pair["status"] != "ok":
            print(f"| {pair['skill']} | {pair['peer']} | - | - | - | - | FAILED: {pair['error']} | - |")
            continue
        for row in pair["rows"]:
            turns = len(row["tpot_turns_ms"])
            ratios = [skill / peer for peer, skill in row["tpot_turns_ms"]]  # the spread says how noisy the turns were
            print(
                f"| {pair['skill']} | {pair['peer']} | {row['batch']} | {turns} | {row['peer_tpot_ms']:.2f} | "
                f"{row['skill_tpot_ms']:.2f} | {row['ratio']:.3f} | {min(ratios):.3f}-{max(ratios):.3f} |"
            )
            key = (pair["skill"], row["batch"])
            if key not in worst or row["ratio"] > worst[key][0]:
                worst[key] = (row["ratio"], pair["peer"])
    print()
    for (skill, batch), (ratio, peer) in worst.items():
        verdict = "met" if ratio <= 1.10 else "not met"
        print(f"goal (paired): {skill} b{batch} TPOT within 10% of every peer of its runtime: {verdict} "
              f"(highest ratio {ratio:.3f}, against {peer})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=SMOLLM2, help="model ref (accel models resolve)")
    parser.add_argument("--prompt-tokens", type=int, default=256)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--batches", default="1", help="comma-separated batch sizes, e.g. 1,4")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--iterations", type=int, default=3, help="timed generations per engine and batch")
    parser.add_argument(
        "--no-cache-iterations", type=int, default=1, help="for a skill without a KV cache (minutes per generation)"
    )
    parser.add_argument("--engines", default=",".join(e.name for e in ENGINES), help="comma-separated subset")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds one engine's worker may take")
    parser.add_argument("--rounds", type=int, default=1, help="runs of every engine, order alternated; medians")
    parser.add_argument("--regenerate", action="store_true", help="generate accel's skills again (accel --force)")
    parser.add_argument("--json-out", type=Path, help="also write every result here")
    parser.add_argument(
        "--paired-turns", type=int, default=0, help="also time each skill against each peer in one process"
    )
    args = parser.parse_args()
    chosen = [name.strip() for name in args.engines.split(",") if name.strip()]
    by_name = {e.name: e for e in ENGINES}
    unknown = sorted(set(chosen) - set(by_name))
    if unknown:
        parser.error(f"unknown engines {unknown}; known: {', '.join(by_name)}")
    batches = [int(b) for b in args.batches.split(",")]
    if args.rounds < 1 or args.iterations < 1:
        parser.error("--rounds and --iterations take a whole number >= 1")

    from accel.settings import get_settings

    home = get_settings().home
    print(machine_load())
    model = accel_json("models", "resolve", args.model)
    print(
        f"model {model['ref']} ({model['architecture']}, {model['parameters_human']} parameters, revision "
        f"{model['revision']}){'; ' + model['weights_note'] if model.get('weights_note') else ''}"
    )
    vocab = json.loads((Path(model["path"]) / "config.json").read_text())["vocab_size"]
    prompts = {str(b): prompt_ids(Path(model["path"]), args.prompt_tokens, b, vocab) for b in batches}
    generation = json.loads((Path(model["path"]) / "generation_config.json").read_text() or "{}")
    pad = generation.get("pad_token_id")
    pad = pad if pad is not None else generation.get("eos_token_id", 0)
    pad = pad[0] if isinstance(pad, list) else pad
    print(
        f"prompt {args.prompt_tokens} tokens, batches {batches}, {args.new_tokens} new tokens forced, greedy, "
        f"{args.threads} threads, {args.iterations} timed generations per engine and batch, {args.rounds} round(s)"
    )
    prepared, ready = {}, {}
    for name in chosen:  # every engine's venv, model form and skill first, so the rounds below only measure
        print(f"{name}: preparing ...", flush=True)
        try:
            prepared[name] = prepare(by_name[name], model, home, ready, args.regenerate)
        except Exception as error:
            prepared[name] = error
            print(f"{name}: FAILED to prepare: {error}", flush=True)
    measured: dict[str, list[dict]] = {name: [] for name in chosen}
    for number in range(args.rounds):
        order = chosen if number % 2 == 0 else chosen[::-1]  # alternated, so drift in the machine's load spreads
        for name in order:
            if isinstance(prepared[name], Exception):
                continue
            python, folder, what = prepared[name]
            spec = {
                "engine": by_name[name].worker,
                "name": name,
                "model_dir": str(folder),
                "threads": args.threads,
                "prompts": prompts,
                "new_tokens": args.new_tokens,
                "iterations": args.iterations,
                "no_cache_iterations": args.no_cache_iterations,
                "pad_token_id": pad,
                **by_name[name].options,
            }
            print(f"round {number + 1}, {name}: measuring ({machine_load()})", flush=True)
            result = run_worker(python, spec, args.timeout) | {"prepared": what, "load": os.getloadavg()[0]}
            measured[name].append(result)
            if result["status"] == "ok":
                summary = ", ".join(
                    f"b{r['batch']} TTFT {r['ttft_ms']:.0f} ms TPOT {r['tpot_ms']:.1f} ms" for r in result["rows"]
                )
                print(f"round {number + 1}, {name}: {summary}", flush=True)
            else:
                print(f"round {number + 1}, {name}: FAILED: {result['error']}", flush=True)
    results = []
    for name in chosen:
        if isinstance(prepared[name], Exception):
            results.append({"engine": name, "status": "error", "error": f"not prepared: {prepared[name]}"})
        else:
            results.append(merge_rounds(measured[name]))
    print_table(results, by_name)
    print_goals(results, by_name)
    if args.paired_turns > 0:
        paired = measure_paired(chosen, by_name, prepared, prompts, pad, args)
        results.append({"engine": "paired", "status": "ok", "pairs": paired})
        print_paired(paired)
    print(machine_load())
    if args.json_out:
        args.json_out.write_text(json.dumps({"model": model, "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
