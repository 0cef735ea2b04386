"""One generation engine, measured in a process of its own: `python worker.py SPEC.json OUT.json`.

Runs under this project's venv (transformers, accel's skills) or a peer's own venv (openvino-genai,
optimum-intel, onnxruntime-genai), so it imports nothing of this project: stdlib, numpy and the
engine's own library only. Every engine is driven the same way: greedy, exactly `new_tokens` new
tokens forced (eos ignored before it), prompts given as token ids. Time to first token is a
1-token generation, the whole generation another call; time per output token is their difference
over the remaining tokens, as optimum-benchmark computes it for engines without per-step hooks.
Writes OUT.json even when the engine fails (status "error" and the error), so the caller prints why.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import json
import resource
import statistics
import sys
import time
import traceback
from importlib import metadata
from pathlib import Path

import numpy as np


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _versions(*names: str) -> dict[str, str]:
    found = {}
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return found


class Transformers:
    """transformers' own `generate` with its KV cache, eager torch, fp32."""

    runtime = "torch"

    def __init__(self, spec: dict) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        torch.set_num_threads(spec["threads"])
        self.torch = torch
        self.model = AutoModelForCausalLM.from_pretrained(spec["model_dir"], dtype=torch.float32).eval()
        self.pad = spec["pad_token_id"]
        self.cache = True
        attention = getattr(self.model.config, "_attn_implementation", None)
        self.notes = [f"attention: {attention}"]
        self.versions = _versions("torch", "transformers")

    def generate(self, ids: np.ndarray, n: int) -> np.ndarray:
        tensor = self.torch.from_numpy(ids)
        with self.torch.inference_mode():
            out = self.model.generate(
                input_ids=tensor, attention_mask=self.torch.ones_like(tensor), max_new_tokens=n,
                min_new_tokens=n, do_sample=False, num_beams=1, pad_token_id=self.pad,
            )  # fmt: skip
        return out[:, ids.shape[1] :].numpy()


def _openvino_config(spec: dict) -> dict:
    # fp32 like accel's skills: on CPUs with AVX512_BF16 or AMX OpenVINO's default is bf16 (and a u8 KV cache).
    config = {"INFERENCE_NUM_THREADS": spec["threads"]}
    if not spec.get("openvino_defaults"):
        config |= {"INFERENCE_PRECISION_HINT": "f32", "KV_CACHE_PRECISION": "f32"}
    return config


class OptimumIntel(Transformers):
    """optimum-intel's OVModelForCausalLM (stateful OpenVINO IR) through transformers' generate."""

    runtime = "openvino"

    def __init__(self, spec: dict) -> None:
        import torch
        from optimum.intel import OVModelForCausalLM

        torch.set_num_threads(spec["threads"])
        self.torch = torch
        config = _openvino_config(spec)
        self.model = OVModelForCausalLM.from_pretrained(spec["model_dir"], device="CPU", ov_config=config)
        self.pad = spec["pad_token_id"]
        self.cache = True
        self.notes = [f"stateful: {getattr(self.model, 'stateful', '?')}", f"ov_config: {_openvino_config(spec)}"]
        self.versions = _versions("optimum-intel", "openvino", "transformers", "torch")


class OpenVINOGenAI:
    """openvino-genai's LLMPipeline on the stateful IR optimum-intel exported."""

    runtime = "openvino"

    def __init__(self, spec: dict) -> None:
        import openvino
        import openvino_genai

        self.openvino, self.genai = openvino, openvino_genai
        config = _openvino_config(spec)
        if spec.get("attention_backend"):
            config["ATTENTION_BACKEND"] = spec["attention_backend"]
        if spec.get("attention_backend") == "PA":
            # Its prefix cache would let every repeat of the same prompt skip the prefill being measured.
            scheduler = openvino_genai.SchedulerConfig()
            scheduler.enable_prefix_caching = False
            config["scheduler_config"] = scheduler
        self.pipe = openvino_genai.LLMPipeline(spec["model_dir"], "CPU", **config)
        self.cache = True
        self.notes = [f"properties: { {k: v for k, v in config.items() if k != 'scheduler_config'} }"]
        if "scheduler_config" in config:
            self.notes.append("prefix caching off")
        self.versions = _versions("openvino-genai", "openvino")

    def generate(self, ids: np.ndarray, n: int) -> np.ndarray:
        config = self.genai.GenerationConfig()
        config.max_new_tokens, config.min_new_tokens, config.do_sample = n, n, False
        inputs = self.genai.TokenizedInputs(self.openvino.Tensor(ids), self.openvino.Tensor(np.ones_like(ids)))
        return np.asarray(self.pipe.generate(inputs, config).tokens, dtype=np.int64)


class OnnxRuntimeGenAI:
    """onnxruntime-genai on the folder its model builder made."""

    runtime = "onnxruntime"

    def __init__(self, spec: dict) -> None:
        import onnxruntime_genai

        self.og = onnxruntime_genai
        config = onnxruntime_genai.Config(spec["model_dir"])
        options = {"intra_op_num_threads": spec["threads"], "inter_op_num_threads": 1}
        config.overlay(json.dumps({"model": {"decoder": {"session_options": options}}}))
        self.model = onnxruntime_genai.Model(config)
        self.cache = True
        self.notes = [f"session options: {options}"]
        self.versions = _versions("onnxruntime-genai", "onnxruntime")

    def generate(self, ids: np.ndarray, n: int) -> np.ndarray:
        params = self.og.GeneratorParams(self.model)
        length = ids.shape[1] + n
        params.set_search_options(max_length=length, min_length=length, do_sample=False, batch_size=len(ids))
        generator = self.og.Generator(self.model, params)
        generator.append_tokens(ids.astype(np.int32))
        while not generator.is_done():
            generator.generate_next_token()
        return np.stack([np.asarray(generator.get_sequence(row))[ids.shape[1] :] for row in range(len(ids))])


class AccelSkill:
    """An accel skill (skill.py imported by path), generated through its own Skill.generate."""

    def __init__(self, spec: dict) -> None:
        folder = Path(spec["model_dir"])
        manifest = json.loads((folder / "manifest.json").read_text())
        self.runtime = manifest["target"]["runtime"]
        module_spec = importlib.util.spec_from_file_location("peer_skill", folder / "skill.py")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules["peer_skill"] = module
        module_spec.loader.exec_module(module)
        self.module = module
        self.skill = module.Skill(threads=spec["threads"])
        self.skill.load()
        extra = sorted(set(module.INPUTS) - {"input_ids", "attention_mask"})
        if extra:
            raise RuntimeError(f"the skill wants inputs {extra} besides input_ids and attention_mask")
        generation = manifest.get("generation") or {}
        self.cache = bool(generation.get("kv_cache")) and hasattr(module.Skill, "prefill")
        self.forces = "min_new_tokens" in inspect.signature(module.Skill.generate).parameters
        self.notes = [f"skill {folder.name}", f"template v{manifest['template']['version']}"]
        if not self.cache:
            self.notes.append("no cache: every step runs the whole sequence")
        if not self.forces:
            self.notes.append("min_new_tokens set through the skill's GENERATION settings")
        self.versions = _versions({"torch": "torch", "onnxruntime": "onnxruntime"}.get(self.runtime, "openvino"))

    def decode_steps(self, ids: np.ndarray, n: int) -> float:
        """Mean ms of one Skill.decode call over a prefill and n-1 greedy decode steps (C2), no generate around it."""
        logits, state = self.skill.prefill({"input_ids": ids, "attention_mask": np.ones_like(ids)})
        token = np.asarray(logits).argmax(axis=-1).astype(np.int64)
        steps = []
        for _ in range(n - 1):
            started = time.perf_counter()
            logits, state = self.skill.decode(token, state)
            steps.append(time.perf_counter() - started)
            token = np.asarray(logits).argmax(axis=-1).astype(np.int64)
        return 1000 * statistics.fmean(steps) if steps else float("nan")

    def generate(self, ids: np.ndarray, n: int) -> np.ndarray:
        inputs = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        if self.forces:
            return self.skill.generate(inputs, max_new_tokens=n, min_new_tokens=n)
        # A skill from before min_new_tokens (C2): its greedy loop reads the minimum from its settings.
        self.module.GENERATION["min_new_tokens"] = n
        return self.skill.generate(inputs, max_new_tokens=n)


ENGINES = {
    "transformers": Transformers,
    "optimum-intel": OptimumIntel,
    "openvino-genai": OpenVINOGenAI,
    "onnxruntime-genai": OnnxRuntimeGenAI,
    "accel": AccelSkill,
}


def _timed(engine, ids: np.ndarray, n: int) -> tuple[float, np.ndarray]:
    started = time.perf_counter()
    tokens = engine.generate(ids, n)
    return (time.perf_counter() - started) * 1000, np.asarray(tokens)


def measure(engine, ids: np.ndarray, new_tokens: int, iterations: int) -> dict:
    """Warm-up, then 1-token and full generations alternated `iterations` times; the raw times in ms."""
    if engine.cache:
        _timed(engine, ids, 1)
        _timed(engine, ids, new_tokens)
    else:  # without a cache a full generation is minutes at this size: warm up on two tokens only
        _timed(engine, ids, 2)
    first, whole, steps, tokens = [], [], [], None
    for _ in range(iterations):
        first.append(_timed(engine, ids, 1)[0])
        seconds, tokens = _timed(engine, ids, new_tokens)
        whole.append(seconds)
        if engine.cache and hasattr(engine, "decode_steps"):
            steps.append(engine.decode_steps(ids, new_tokens))
    ttft, e2e = statistics.median(first), statistics.median(whole)
    produced = tokens.shape[1]
    return {
        "decode_call_ms": round(statistics.median(steps), 3) if steps else None,
        "batch": len(ids),
        "prompt_tokens": ids.shape[1],
        "new_tokens": produced,
        "ttft_ms": round(ttft, 3),
        "e2e_ms": round(e2e, 3),
        "tpot_ms": round((e2e - ttft) / max(produced - 1, 1), 3),
        "tokens_per_s": round(len(ids) * produced / (e2e / 1000), 2),
        "ttft_samples_ms": [round(v, 3) for v in first],
        "e2e_samples_ms": [round(v, 3) for v in whole],
        "tokens": tokens.tolist(),
        "peak_rss_mib": round(_peak_rss_mib(), 1),
    }


def run(spec: dict) -> dict:
    result = {"engine": spec["name"], "status": "ok", "rows": []}
    try:
        started = time.perf_counter()
        engine = ENGINES[spec["engine"]](spec)
        result |= {
            "load_s": round(time.perf_counter() - started, 3),
            "runtime": engine.runtime,
            "cache": engine.cache,
            "notes": engine.notes,
            "versions": engine.versions,
            "rss_loaded_mib": round(_rss_mib(), 1),
        }
        iterations = spec["iterations"] if engine.cache else spec["no_cache_iterations"]
        counts = spec["new_tokens"] if isinstance(spec["new_tokens"], list) else [spec["new_tokens"]]
        for batch, prompt in spec["prompts"].items():
            ids = np.asarray(prompt, dtype=np.int64)
            for new_tokens in counts:
                print(f"  {spec['name']}: batch {batch}, {new_tokens} new tokens", file=sys.stderr, flush=True)
                result["rows"].append(measure(engine, ids, new_tokens, iterations))
    except Exception as error:  # the engine's own failure, reported by the caller beside the others
        result |= {
            "status": "error",
            "error": f"{type(error).__name__}: {error}".strip()[:2000],
            "traceback": traceback.format_exc()[-4000:],
        }
    result["peak_rss_mib"] = round(_peak_rss_mib(), 1)
    return result


def run_paired(spec: dict) -> dict:
    """Two engines (a peer, then a skill) loaded in this one process and timed in turns, A B then B A: the
    ratio within a turn is free of the drift in the machine's speed between processes minutes apart."""
    first, second = spec["paired"]
    result = {"engine": f"{second['name']} / {first['name']}", "status": "ok", "rows": []}
    try:
        engines = [ENGINES[s["engine"]](s) for s in (first, second)]
        n = spec["new_tokens"]
        for prompt in spec["prompts"].values():
            ids = np.asarray(prompt, dtype=np.int64)
            for engine in engines:  # warm-up
                _timed(engine, ids, 1)
                _timed(engine, ids, n)
            turns = []
            for turn in range(spec["turns"]):
                tpot = [0.0, 0.0]
                for index in (0, 1) if turn % 2 == 0 else (1, 0):
                    ttft, whole = _timed(engines[index], ids, 1)[0], _timed(engines[index], ids, n)[0]
                    tpot[index] = round((whole - ttft) / max(n - 1, 1), 3)
                turns.append(tpot)
            result["rows"].append(
                {
                    "batch": len(ids),
                    "tpot_turns_ms": turns,
                    "peer_tpot_ms": round(statistics.median(t[0] for t in turns), 3),
                    "skill_tpot_ms": round(statistics.median(t[1] for t in turns), 3),
                    "ratio": round(statistics.median(t[1] / t[0] for t in turns), 3),
                }
            )
    except Exception as error:
        result |= {"status": "error", "error": f"{type(error).__name__}: {error}".strip()[:2000]}
    return result


def main() -> None:
    spec_path, out_path = Path(sys.argv[1]), Path(sys.argv[2])
    spec = json.loads(spec_path.read_text())
    out_path.write_text(json.dumps(run_paired(spec) if "paired" in spec else run(spec)) + "\n")


if __name__ == "__main__":
    main()
