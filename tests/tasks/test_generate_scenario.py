"""The generate scenario, LLM-leaderboard style: TTFT, TPOT, generated tokens/s and the decode's bandwidth
utilisation on a tiny model, the leaderboard's defaults within the model's positions, and refusals."""

import json
import shutil
from pathlib import Path

import pytest

from accel.hardware.memory_bandwidth import BandwidthProbe
from accel.settings import get_settings
from accel.storage import ResultsStore
from accel.tasks.benchmark import BenchConfig, benchmark
from accel.tasks.benchmark.bandwidth import decode_bytes, set_bandwidth_utilization
from accel.tasks.benchmark.config import check_request, plan_points
from accel.tasks.errors import SkillDirError
from tests.cli.test_cli import accel

QUICK = {"warmup": 1, "min_iters": 3, "min_seconds": 0.1, "max_seconds": 5.0, "rounds": 1, "threads": 1}
SMALL = {"scenarios": ["generate"], "generate_batches": [1, 4], "prompt_tokens": 8, "new_tokens": 6, **QUICK}


def with_kv_cache(skill_dir: Path, tmp_path: Path) -> Path:
    """The skill with the `generation.kv_cache` sizes of contract C1 in its manifest, from its model's config
    (for skills generated before their templates carried a cache: the byte count is what is tested here)."""
    twin = shutil.copytree(skill_dir, tmp_path / "with-cache")
    manifest = json.loads((twin / "manifest.json").read_text())
    config = json.loads((Path(manifest["model"]["path"]) / "config.json").read_text())
    heads = config.get("n_head") or config["num_attention_heads"]
    hidden = config.get("n_embd") or config["hidden_size"]
    manifest["generation"]["kv_cache"] = manifest["generation"].get("kv_cache") or {
        "layers": config.get("n_layer") or config["num_hidden_layers"],
        "kv_heads": config.get("num_key_value_heads") or heads,
        "head_dim": hidden // heads,
        "dtype": "float32",
        "encoder_decoder": False,
        "layout": "past_key_values inputs/outputs",
    }
    (twin / "manifest.json").write_text(json.dumps(manifest))
    return twin


@pytest.fixture(scope="module")
def gpt2(tiny_skill):
    return tiny_skill("gpt2", "cpu/onnxruntime").path


def test_generate_rows_hold_ttft_tpot_tokens_per_s_and_the_bandwidth_utilisation(gpt2, tmp_path):
    skill = with_kv_cache(gpt2, tmp_path)
    report = benchmark(skill, BenchConfig(**SMALL))
    rows = ResultsStore(get_settings().results_path).measurements(run_id=report.run_id)
    assert [(m.scenario, m.batch, m.seq) for m in rows] == [("generate", 1, 8), ("generate", 4, 8)]
    for m in rows:
        assert m.status == "ok", m.error
        n = m.new_tokens
        assert n == 6 or (not m.details["fixed_length"] and 1 <= n < 6 and "stopped at" in m.details["new_tokens_note"])
        assert 0 < m.prefill_ms < m.p50_ms  # the time to first token, inside the whole generate
        if n > 1:  # the time per output token: the rest of the generate over the tokens after the first
            assert m.decode_ms_per_token == pytest.approx((m.p50_ms - m.prefill_ms) / (n - 1))
        assert m.tokens_per_s == pytest.approx(m.batch * n / (m.p50_ms / 1000))
        assert m.peak_rss_bytes > 50 << 20 and m.noisy == (m.noise_reason is not None)
        assert m.memory_bandwidth_gbs > 0 and m.details["memory_bandwidth"]["kernels"].keys() == {"copy", "triad"}
        assert m.decode_bytes_per_step > 0 and "KV cache" in m.details["bandwidth_basis"]
        if m.bandwidth_utilization is not None:
            assert 0 < m.bandwidth_utilization <= 1
            assert m.bandwidth_utilization == pytest.approx(
                m.decode_bytes_per_step / (m.decode_ms_per_token / 1000) / (m.memory_bandwidth_gbs * 1e9)
            )
        else:  # a contended probe (a busy machine) or bytes that fit in the cache: said, never a figure
            assert m.details["bandwidth_withheld"]
    one, four = rows
    assert four.decode_bytes_per_step > one.decode_bytes_per_step  # four sequences' caches, one read of the weights


def test_without_a_kv_cache_the_utilisation_is_not_computed_and_the_row_says_why(gpt2):
    manifest = json.loads((gpt2 / "manifest.json").read_text())
    if (manifest.get("generation") or {}).get("kv_cache"):
        manifest["generation"].pop("kv_cache")  # a skill generated with a cache: as one without
    found, why = decode_bytes(manifest, 1, 8, 6)
    assert found is None and "no KV cache" in why
    row, details = {"batch": 1, "seq": 8, "new_tokens": 6, "decode_ms_per_token": 1.0}, {}
    set_bandwidth_utilization(row, details, [], manifest, None, None)
    assert "bandwidth_utilization" not in row and "no KV cache" in details["bandwidth_withheld"]


def _manifest(parameters: int, precision: str, encoder_decoder: bool = False) -> dict:
    cache = {"layers": 2, "kv_heads": 3, "head_dim": 4, "dtype": "float16", "encoder_decoder": encoder_decoder}
    return {
        "model": {"parameters": parameters},
        "target": {"precision": precision},
        "generation": {"kv_cache": {**cache, "layout": "past_key_values inputs/outputs"}},
    }


def test_the_bytes_of_a_decode_step_are_the_weights_once_and_each_sequences_cache_at_its_mean_length():
    per_position = 2 * 2 * 3 * 4 * 2  # K and V x layers x kv heads x head dim x fp16
    found, basis = decode_bytes(_manifest(1000, "fp32"), batch=4, prompt=10, new_tokens=6)
    assert found == 1000 * 4 + 4 * per_position * (10 + 6 / 2)
    assert "fp32" in basis and "mean context" in basis
    found, _ = decode_bytes(_manifest(1000, "int8"), batch=1, prompt=10, new_tokens=6)
    assert found == 1000 + per_position * 13
    # an encoder-decoder: its decoder's own cache from one start token, plus the prompt's cross-attention cache
    found, basis = decode_bytes(_manifest(1000, "bf16", encoder_decoder=True), batch=1, prompt=10, new_tokens=6)
    assert found == 1000 * 2 + per_position * (1 + 3 + 10) and "cross-attention" in basis


def _probe(gbs: float, quiet: bool = True, llc: int = 32 << 20) -> BandwidthProbe:
    return BandwidthProbe(
        threads=1,
        bytes_per_s=gbs * 1e9,
        median_bytes_per_s=gbs * 1e9,
        spread=0.0,
        passes=3,
        kernel="copy",
        kernels={"copy": gbs * 1e9},
        array_bytes=128 << 20,
        llc_bytes=llc,
        foreign_share=0.0 if quiet else 0.6,
        steal_share=0.0,
        quiet=quiet,
    )


def test_a_utilisation_above_100_percent_is_withheld_and_flagged_unless_the_bytes_fit_in_the_cache():
    big = _manifest(100_000_000, "fp32")  # 400 MB of weights per step, far past any cache
    row = {"batch": 1, "seq": 8, "new_tokens": 6, "decode_ms_per_token": 1.0}  # 400 GB/s: impossible at 10
    details, reasons = {}, []
    set_bandwidth_utilization(row, details, reasons, big, _probe(10.0), None)
    assert "bandwidth_utilization" not in row and "physically impossible" in details["bandwidth_withheld"]
    assert reasons and reasons[0].startswith("impossible: bandwidth utilisation")
    small = _manifest(1000, "fp32")  # a few KiB: read from the cache, so no memory bound, and no bug either
    row = {"batch": 1, "seq": 8, "new_tokens": 6, "decode_ms_per_token": 1e-6}
    details, reasons = {}, []
    set_bandwidth_utilization(row, details, reasons, small, _probe(10.0), None)
    assert "last-level cache" in details["bandwidth_withheld"] and reasons == []
    row = {"batch": 1, "seq": 8, "new_tokens": 6, "decode_ms_per_token": 100.0}
    details = {}
    set_bandwidth_utilization(row, details, [], big, _probe(10.0, quiet=False), None)
    assert "other processes used 60%" in details["bandwidth_withheld"] and row["memory_bandwidth_gbs"] == 10.0
    set_bandwidth_utilization(row, {}, [], big, _probe(10.0), None)
    assert row["bandwidth_utilization"] == pytest.approx(0.4, rel=1e-4)  # 400 MB in 100 ms: 4 GB/s of 10


def test_the_defaults_are_the_leaderboards_within_the_models_positions_and_a_prompt_past_them_is_refused(gpt2):
    manifest = json.loads((gpt2 / "manifest.json").read_text())
    limit = manifest["dims"]["seq"]["max"]
    config = BenchConfig()
    points = plan_points(config, manifest)
    generate = [(p["batch"], p["seq"], p["new_tokens"]) for p in points if p["scenario"] == "generate"]
    prompt = min(256, limit - 64)  # the tiny model has fewer positions than 256 + 64
    assert generate == [(1, prompt, 64), (4, prompt, 64)]
    assert [(p["batch"], p["seq"]) for p in points if p["scenario"] == "forward"] == [(1, None)]  # its own defaults
    check_request(config, manifest, points)
    for asked, says in (({"prompt_tokens": limit}, "at most"), ({"new_tokens": limit}, "fewer new tokens")):
        config = BenchConfig(scenarios=["generate"], **asked)
        with pytest.raises(SkillDirError, match=f"past this model's maximum of {limit} positions.*{says}"):
            benchmark(gpt2, config, record=False)


def test_accel_bench_shows_ttft_tpot_and_tokens_per_s_and_its_json_carries_them(capsys, gpt2):
    from rich.console import Console

    from accel.cli.bench import _table
    from accel.tasks.benchmark import BenchReport

    args = ["bench", str(gpt2), "--scenario", "generate", "--generate-batch", "2", "--prompt-tokens", "8"]
    args += ["--new-tokens", "4", "--rounds", "1", "--min-iters", "3", "--min-seconds", "0.1", "--threads", "1"]
    code, out, err = accel(capsys, *args, "--json")
    assert code == 0, err
    report = json.loads(out)
    [row] = report["measurements"]
    assert row["batch"] == 2 and row["seq"] == 8
    assert row["prefill_ms"] > 0 and row["decode_ms_per_token"] > 0 and row["tokens_per_s"] > 0
    assert row["memory_bandwidth_gbs"] > 0 and {"new_tokens", "bandwidth_utilization", "noisy"} <= set(row)
    console = Console(width=250, record=True)
    console.print(_table(BenchReport.model_validate(report)))  # the table `accel bench` prints without --json
    text = console.export_text()
    assert "TTFT ms" in text and "TPOT ms" in text and "tokens/s" in text and "MFU / BW" in text
    assert f"{row['prefill_ms']:.3f}" in text and f"{row['decode_ms_per_token']:.3f}" in text
    assert f"{row['tokens_per_s']:.0f}" in text and ("noisy" in text) == row["noisy"]


def test_the_run_table_shows_ttft_tpot_and_tokens_per_s_of_the_generate_headline_with_its_noisy_marker():
    from rich.console import Console

    from accel.cli.run import _table
    from accel.flows.results import ChainResult, PipelineResult
    from accel.storage import MeasurementRecord

    common = {"run_id": "r", "skill_id": "s", "status": "ok", "p50_ms": 40.0, "rounds": 3}
    forward = MeasurementRecord(scenario="forward", batch=1, seq=128, tokens_per_s=3200.0, **common)
    generated = MeasurementRecord(
        scenario="generate", batch=1, seq=256, prefill_ms=12.5, decode_ms_per_token=3.25, tokens_per_s=250.0,
        new_tokens=64, noisy=True, noise_reason="the rounds' medians vary", **common,
    )  # fmt: skip
    chain = ChainResult(model="m", target="cpu/onnxruntime", run_id="r", status="passed", stage="done", message="")
    chain.add_measurements([forward, generated])
    assert (chain.ttft_ms, chain.tpot_ms, chain.generate_tokens_per_s, chain.generate_batch) == (12.5, 3.25, 250.0, 1)
    assert chain.p50_ms == 40.0 and not chain.noisy and chain.generate_noisy  # the forward headline stays
    console = Console(width=250, record=True)
    console.print(_table(PipelineResult(run_id="p", status="passed", results=[chain])))
    text = console.export_text()
    assert "TTFT ms" in text and "TPOT ms" in text and "gen tokens/s" in text
    assert "12.50 (noisy)" in text and "3.25 (noisy)" in text and "250 (noisy) (b1)" in text
    assert "1 other point(s) noisy" in text
    plain = ChainResult(model="m", target="cpu/torch", run_id="q", status="passed", stage="done", message="")
    plain.add_measurements([forward])
    console = Console(width=250, record=True)
    console.print(_table(PipelineResult(run_id="p", status="passed", results=[plain])))
    assert "TTFT" not in console.export_text()  # no generate point: no empty columns
    assert chain.model_dump(mode="json")["tpot_ms"] == 3.25  # and `accel run --json` carries them


def test_accel_run_sends_generate_settings_through_the_api(capsys, tiny_models):
    """--api carries the generate settings (the request schema maps them: tests/api/test_request_bench.py):
    nothing is refused here; an API that does not answer is said in one line."""
    args = ["run", str(tiny_models["gpt2"]), "--targets", "cpu/onnxruntime", "--api", "http://127.0.0.1:9"]
    code, out, err = accel(capsys, *args, "--new-tokens", "8", "--generate-batch", "1", "--rounds", "1")
    assert code != 0 and out == "" and "not sent" not in err and "127.0.0.1:9" in err
    assert len(err.strip().splitlines()) == 1
