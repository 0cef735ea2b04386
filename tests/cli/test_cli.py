"""The `accel` command: JSON for scripts, tables for people, exit 2 and one line for bad input."""

import json
import os
import subprocess
import sys

import pytest

from accel.cli.main import run
from tests.tiny_models import TINY_MODELS


def accel(capsys, *args: str) -> tuple[int, str, str]:
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exited:
        run(list(args))
    out, err = capsys.readouterr()
    return exited.value.code, out, err


def test_hardware_json_is_one_document_with_targets_and_pools(capsys):
    code, out, _ = accel(capsys, "hardware", "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["cpu"]["logical_cores"] == os.cpu_count()
    assert doc["work_pools"]["cpu"] == "accel-cpu"
    available = {t["target"] for t in doc["targets"] if t["available"]}
    assert {"cpu/torch", "cpu/onnxruntime", "cpu/openvino"} <= available
    assert all(t["reason"] for t in doc["targets"] if not t["available"])


def test_hardware_table_names_the_runtimes_and_targets(capsys):
    code, out, _ = accel(capsys, "hardware")
    assert code == 0
    for word in ("Accelerators", "Runtimes", "onnxruntime", "openvino", "cpu/torch", "accel-cpu"):
        assert word in out


def test_targets_all_lists_unavailable_ones_with_reasons(capsys):
    code, out, _ = accel(capsys, "targets", "--all", "--json")
    rows = json.loads(out)
    assert code == 0 and any(not r["available"] and r["reason"] for r in rows)
    code, out, _ = accel(capsys, "targets", "--json")
    assert code == 0 and all(r["available"] for r in json.loads(out))


@pytest.mark.parametrize("name", ["bert", "whisper"])
def test_models_resolve_json(capsys, tiny_models, name):
    code, out, _ = accel(capsys, "models", "resolve", str(tiny_models[name]), "--json", "-t", "cpu/onnxruntime")
    doc = json.loads(out)
    assert code == 0
    assert (doc["family"], doc["task"]) == (TINY_MODELS[name].family, TINY_MODELS[name].task)
    assert doc["path"] == str(tiny_models[name].resolve()) and doc["parameters"] > 0
    assert doc["targets"][0]["target"] == "cpu/onnxruntime" and doc["targets"][0]["available"]


def test_models_resolve_table(capsys, tiny_models):
    code, out, _ = accel(capsys, "models", "resolve", str(tiny_models["clip"]))
    assert code == 0
    assert "vision-text" in out and "CLIPModel" in out and "parameters" in out


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["models", "resolve", "/no/such/model"], "does not exist"),
        (["models", "resolve", "some-org/uncached"], "HF_HUB_OFFLINE"),
        (["models", "resolve", "MODEL_DIR", "--target", "cpu/tensorrt"], "unknown runtime"),
        (["models", "resolve", "MODEL_DIR", "-t", "cpu"], "malformed target"),
        (["models", "resolve"], "Missing argument"),
        (["hardware", "--bogus"], "No such option"),
        (["nonsense"], "No such command"),
    ],
)
def test_bad_input_exits_2_with_one_line(capsys, tiny_models, args, says):
    args = [str(tiny_models["bert"]) if a == "MODEL_DIR" else a for a in args]
    code, out, err = accel(capsys, *args)
    assert code == 2 and out == ""
    assert err.startswith("accel: error: ") and says in err and err.count("\n") == 1


def test_refusals_of_model_directories(capsys, tmp_path):
    code, _, err = accel(capsys, "models", "resolve", str(tmp_path))
    assert code == 2 and "has no config.json" in err
    (tmp_path / "config.json").write_text(
        json.dumps({"model_type": "patchtst", "architectures": ["PatchTSTForPrediction"]})
    )
    code, _, err = accel(capsys, "models", "resolve", str(tmp_path))
    assert code == 2 and "speech, vision-text" in err and err.count("\n") == 1


def test_the_console_script_prints_no_traceback_on_bad_input(tmp_path):
    accel_bin = os.path.join(os.path.dirname(sys.executable), "accel")
    result = subprocess.run(
        [accel_bin, "models", "resolve", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stdout == "" and "Traceback" not in result.stderr
    assert result.stderr.startswith("accel: error: model directory")


def test_the_cli_starts_without_importing_the_ml_stack():
    # `accel --help`, `accel hardware` and bad-input errors answer at once; torch and transformers
    # load only in the commands that use them
    heavy = "('torch', 'transformers', 'prefect')"
    code = f"import sys, accel.cli.main; print(sorted(m for m in {heavy} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "[]"
