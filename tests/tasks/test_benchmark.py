"""The benchmark stage: honest numbers, failures as data, one benchmark per device, regressions found."""

import json
import shutil
import threading
from pathlib import Path

import pytest

from accel.settings import get_settings
from accel.storage import ResultsStore, compare_runs
from accel.tasks.benchmark import BenchConfig, benchmark, skipped_rows
from accel.tasks.errors import SkillDirError

CALL = "        return self._backend.run(check_inputs(inputs))\n"
QUICK = {"warmup": 1, "min_iters": 5, "min_seconds": 0.2, "max_seconds": 5.0}


def plant(skill_dir: Path, tmp_path: Path, name: str, new: str) -> Path:
    twin = shutil.copytree(skill_dir, tmp_path / name)
    source = (twin / "skill.py").read_text()
    (twin / "skill.py").write_text(source.replace(CALL, new + CALL))
    return twin


def test_a_benchmark_measures_records_and_describes_every_point(tiny_skill):
    skill = tiny_skill("bert", "cpu/onnxruntime")
    config = BenchConfig(batches=[1, 3], seqs=[8, 24], threads=1, **QUICK)
    report = benchmark(skill.path, config)
    rows = ResultsStore(get_settings().results_path).measurements(run_id=report.run_id)
    assert [(m.batch, m.seq) for m in rows] == [(1, 8), (1, 24), (3, 8), (3, 24)]
    for m in rows:
        assert m.status == "ok" and m.iterations == len(m.samples_ms) >= 5
        assert m.details["end"] - m.details["start"] >= 0.2  # both minimums met
        assert m.min_ms <= m.p50_ms <= m.p90_ms <= m.p95_ms <= m.p99_ms <= m.max_ms
        assert m.mean_ms == pytest.approx(sum(m.samples_ms) / len(m.samples_ms))
        assert m.samples_per_s == pytest.approx(m.batch / (m.mean_ms / 1000))
        assert m.tokens_per_s == pytest.approx(m.batch * m.seq / (m.mean_ms / 1000))
        assert m.flops > 0 and 0 < m.mfu < 1 and m.peak_flops > 1e9
        assert m.peak_rss_bytes > 50 << 20 and m.load_s > 0 and m.first_call_ms > 0
        assert m.threads == 1 and m.load_before is not None and m.noisy is not None
        assert m.details["inputs"]["input_ids"] == [m.batch, m.seq]
    flops = {(m.batch, m.seq): m.flops for m in rows}
    assert flops[(3, 24)] > flops[(1, 24)] > flops[(1, 8)]  # counted, not assumed
    run = ResultsStore(get_settings().results_path).get_run(report.run_id)
    assert (run.kind, run.status) == ("benchmark", "completed") and run.environment_id


def test_the_maximum_duration_caps_a_point(tiny_skill):
    config = BenchConfig(batches=[1], warmup=0, min_iters=10**6, min_seconds=0.0, max_seconds=0.3)
    m = benchmark(tiny_skill("vit", "cpu/onnxruntime").path, config, record=False).measurements[0]
    assert m.status == "ok" and 0.3 <= m.details["end"] - m.details["start"] < 1.5 and m.iterations < 10**6


def test_peak_memory_catches_a_spike_no_sampler_would_see(tiny_skill, tmp_path):
    # 400 MB touched and freed within one call: the kernel's high-water mark still has it
    spike = plant(
        tiny_skill("bert", "cpu/onnxruntime").path,
        tmp_path,
        "spike",
        "        if len(inputs['input_ids']) == 2:\n            np.ones(50_000_000).sum()\n",
    )
    config = BenchConfig(batches=[1, 2], seqs=[8], threads=1, **QUICK)
    small, big = benchmark(spike, config, record=False).measurements
    assert big.peak_rss_bytes - small.peak_rss_bytes > 350 << 20


def test_generation_reports_prefill_decode_and_tokens_per_second(tiny_skill):
    config = BenchConfig(batches=[2], seqs=[8], scenarios=["generate"], new_tokens=6, **QUICK)
    m = benchmark(tiny_skill("gpt2", "cpu/onnxruntime").path, config, record=False).measurements[0]
    assert m.scenario == "generate" and m.status == "ok"
    assert 0 < m.prefill_ms < m.p50_ms and m.decode_ms_per_token > 0
    assert m.tokens_per_s == pytest.approx(2 * m.details["new_tokens"] / (m.p50_ms / 1000))


def test_a_crashing_and_a_hanging_point_become_rows_while_the_others_complete(tiny_skill, tmp_path):
    good = tiny_skill("bert", "cpu/onnxruntime").path
    crash = plant(
        good,
        tmp_path,
        "crash",
        "        if len(inputs['input_ids']) == 2:\n            import os\n\n            os._exit(7)\n",
    )
    hang = plant(good, tmp_path, "hang", "        if len(inputs['input_ids']) == 2:\n            time.sleep(3600)\n")
    config = BenchConfig(batches=[1, 2, 3], seqs=[8], point_timeout_s=10, **QUICK)
    crashed = benchmark(crash, config)
    assert [m.status for m in crashed.measurements] == ["ok", "error", "ok"]
    assert "exited with code 7" in crashed.measurements[1].error
    assert crashed.measurements[1].peak_rss_bytes is None  # died before reporting it: unknown, not guessed
    hung = benchmark(hang, config.model_copy(update={"batches": [2, 3], "point_timeout_s": 8}))
    assert [m.status for m in hung.measurements] == ["timeout", "ok"]
    assert "no result within 8 s" in hung.measurements[0].error
    assert hung.measurements[0].peak_rss_bytes > 50 << 20  # read before the kill
    store = ResultsStore(get_settings().results_path)
    assert [m.status for m in store.measurements(run_id=hung.run_id)] == ["timeout", "ok"]
    assert store.get_run(hung.run_id).status == "failed"


def test_a_planted_slow_skill_is_found_regressed_against_its_normal_twin(tiny_skill, tmp_path):
    good = tiny_skill("bert", "cpu/onnxruntime").path
    slow = plant(good, tmp_path, "slow", "        time.sleep(0.003)\n")
    config = BenchConfig(batches=[1], seqs=[8], warmup=2, min_iters=30, min_seconds=0.3, threads=1)
    normal_run = benchmark(good, config).run_id
    slow_run = benchmark(slow, config).run_id
    store = ResultsStore(get_settings().results_path)
    [point] = compare_runs(store, normal_run, slow_run)
    assert point.change.verdict == "regressed" and point.change.ratio > 1.5 and point.change.p_value < 0.01
    [back] = compare_runs(store, slow_run, normal_run)
    assert back.change.verdict == "improved"
    with pytest.raises(KeyError):
        compare_runs(store, normal_run, "no-such-run")


def test_two_benchmarks_started_together_take_turns_on_the_device(tiny_skill):
    paths = [tiny_skill("vit", "cpu/onnxruntime").path, tiny_skill("bert", "cpu/openvino").path]
    config = BenchConfig(batches=[1, 2], seqs=[8], **QUICK)
    reports = []
    threads = [threading.Thread(target=lambda p=p: reports.append(benchmark(p, config, record=False))) for p in paths]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    windows = sorted(
        (min(m.details["start"] for m in r.measurements), max(m.details["end"] for m in r.measurements))
        for r in reports
    )
    assert windows[0][1] <= windows[1][0], f"measurements overlapped: {windows}"
    assert max(r.measurements[0].details["waited_for_device_s"] for r in reports) > 0.1


def test_bad_configurations_are_refused(tiny_skill, tmp_path):
    with pytest.raises(SkillDirError, match="does not generate"):
        benchmark(tiny_skill("vit", "cpu/onnxruntime").path, BenchConfig(scenarios=["generate"]), record=False)
    with pytest.raises(SkillDirError, match="not a skill directory"):
        benchmark(tmp_path, record=False)


def test_skipped_rows_name_every_point_the_config_would_have_measured(tiny_skill):
    skill = tiny_skill("gpt2", "cpu/onnxruntime").path
    rows = skipped_rows(skill, BenchConfig(batches=[1, 4], seqs=[None, 16]), "run-x", "tests failed")
    default_seq = json.loads((skill / "manifest.json").read_text())["dims"]["seq"]["default"]
    assert {(m.scenario, m.batch, m.seq) for m in rows} == {
        (scenario, batch, seq) for scenario in ("forward", "generate") for batch in (1, 4) for seq in (default_seq, 16)
    }
    assert all(m.status == "skipped" and m.error == "tests failed" and m.run_id == "run-x" for m in rows)
