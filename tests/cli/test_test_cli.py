"""`accel test` from the command line: a table or JSON, and exit codes that say what happened."""

import json
import shutil

from tests.cli.test_cli import accel


def test_a_good_skill_exits_0_and_a_broken_one_exits_1(capsys, tiny_skill, tmp_path):
    good = tiny_skill("vit", "cpu/onnxruntime").path
    code, out, _ = accel(capsys, "test", str(good), "--json")
    doc = json.loads(out)
    assert code == 0 and doc["status"] == "passed" and doc["checks"][0]["check"] == "loads"
    broken = shutil.copytree(good, tmp_path / "broken")
    source = (broken / "skill.py").read_text()
    (broken / "skill.py").write_text(
        source.replace(
            "        return self._backend.run(check_inputs(inputs))\n",
            "        return {k: v * 1.01 for k, v in self._backend.run(check_inputs(inputs)).items()}\n",
        )
    )
    code, out, _ = accel(capsys, "test", str(broken))
    assert code == 1 and "parity" in out and "failed" in out


def test_a_model_ref_is_generated_first(capsys, tiny_models, tmp_path):
    code, out, _ = accel(capsys, "test", str(tiny_models["t5"]), "--target", "cpu/openvino", "--json")
    assert code == 0 and json.loads(out)["target"] == "cpu/openvino"


def test_bad_requests_exit_2_with_one_line(capsys, tiny_models, tiny_skill, tmp_path):
    for args, says in (
        ([str(tmp_path)], "not a skill directory"),
        ([str(tiny_skill("vit", "cpu/onnxruntime").path), "--level", "thorough"], "unknown level"),
        ([str(tiny_models["bert"]), "--target", "cpu/nope"], "unknown runtime"),
    ):
        code, out, err = accel(capsys, "test", *args)
        assert code == 2 and out == "" and says in err and err.count("\n") == 1
