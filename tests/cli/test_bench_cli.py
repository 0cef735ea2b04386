"""`accel bench` and `accel compare`: bad input is exit 2 and one line before any work; every figure
carries its flag in the table and the JSON."""

import json
import os
import subprocess
import sys

import pytest

from accel.settings import get_settings
from accel.storage import ResultsStore
from tests.cli.test_cli import accel

QUICK = ["--min-iters", "3", "--min-seconds", "0.3", "--warmup", "1", "--threads", "1"]


def one_line_error(code: int, err: str, *words: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("accel: error: ") and "Traceback" not in err, err
    for word in words:
        assert word in lines[0], lines[0]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--seq", "100000"], "past this model's maximum"),
        (["--batch", "1000000000"], "batch must be between"),
        (["--rounds", "0"], "--rounds must be between 1 and 20"),
        (["--rounds", "500"], "--rounds must be between 1 and 20"),
        (["--rounds", "three"], "--rounds"),
        (["--batch", "0"], "--batch"),
    ],
)
def test_bench_refuses_bad_input_with_one_line_and_leaves_no_run_running(capsys, tiny_skill, accel_home, args, says):
    skill = tiny_skill("bert", "cpu/onnxruntime").path
    code, out, err = accel(capsys, "bench", str(skill), *args)
    one_line_error(code, err, says)
    assert out == ""
    if (accel_home / "results.duckdb").exists():
        runs = ResultsStore(get_settings().results_path).list_runs(kind="benchmark")
        assert [r for r in runs if r.status == "running"] == []


def test_bench_json_and_table_carry_the_noisy_flag_of_a_busy_machine(capsys, tiny_skill):
    skill = tiny_skill("bert", "cpu/onnxruntime").path
    code, out, _ = accel(capsys, "bench", str(skill), "--seq", "16", "--rounds", "2", *QUICK, "--json")
    assert code == 0
    [row] = json.loads(out)["measurements"]
    assert row["rounds"] == 2 and len(row["round_p50_ms"]) == 2
    assert {"noisy", "noise_reason", "foreign_cpu_share", "steal_share"} <= set(row)
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in os.sched_getaffinity(0)]
    try:
        code, out, _ = accel(capsys, "bench", str(skill), "--seq", "16", "--rounds", "1", *QUICK)
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()
    assert code == 0
    assert "noisy" in out and "NOISY: other processes used" in out.replace("\n", " ").replace("│", " ")


def test_the_run_table_the_pipeline_report_and_the_nightly_markdown_show_each_figures_flag():
    from rich.console import Console

    from accel.cli.run import _table
    from accel.flows.nightly import _markdown
    from accel.flows.report import markdown, rows
    from accel.flows.results import ChainResult
    from accel.storage import Change, PointComparison

    why = "other processes used 52% of the 2 cores while round 1 was timed (more than 10%)"
    result = ChainResult(
        model="m", target="cpu/onnxruntime", run_id="r", status="passed", stage="done", message="10/10 checks"
    )
    result = result.model_copy(update={"p50_ms": 75.4, "batch": 1, "seq": 128, "noisy": True, "noise_reason": why})

    class Pipeline:
        run_id, results = "p", [result]

    console = Console(width=400, record=True)
    console.print(_table(Pipeline()))
    printed = console.export_text()
    assert "(noisy)" in printed and f"NOISY: {why}" in printed
    assert rows([result])[0]["flag"] == f"NOISY: {why}" and f"NOISY: {why}" in markdown("t", [result])
    assert "TTFT ms" not in markdown("t", [result]) and rows([result])[0]["TTFT ms"] == "-"  # it did not generate
    generated = result.model_copy(
        update={"ttft_ms": 232.4, "tpot_ms": 21.7, "generate_tokens_per_s": 40.0, "generate_batch": 1}
    )
    noisy_generated = generated.model_copy(update={"generate_noisy": True})
    assert (rows([generated])[0]["TPOT ms"], rows([generated])[0]["gen tokens/s"]) == ("21.70", "40 (b1)")
    assert rows([noisy_generated])[0]["TTFT ms"] == "232.40 (noisy)"
    assert "| TTFT ms | TPOT ms | gen tokens/s |" in markdown("t", [generated])
    change = Change(verdict="inconclusive", ratio=1.2, reason=f"the new figure is noisy ({why})")
    point = PointComparison(
        model_ref="m", target="cpu/onnxruntime", scenario="forward", batch=1, seq=128, old_p50_ms=25.0,
        new_p50_ms=75.4, noisy=True, noise_reason=f"new: {why}", change=change,
    )  # fmt: skip
    assert f"NOISY: new: {why}" in _markdown("n", "o", [point])
