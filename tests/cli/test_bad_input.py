"""Bad input to `accel run`, `worker`, `up`, `generate` and `compare`: exit 2 and one line, never a traceback."""

import pytest

from tests.cli.test_cli import accel


def one_line_error(code: int, err: str, *words: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("accel: error: "), err
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], lines[0]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--targets", "cpu/tensorflow"], "unknown runtime"),
        (["--targets", "cpu/onnxruntime", "--level", "extreme"], "unknown level"),
        (["--targets", "cpu/onnxruntime", "--batch", "0"], "--batch"),
        (["--targets", "cpu/onnxruntime", "--seq", "eight"], "--seq"),
        (["--targets", "cpu/onnxruntime", "--min-seconds", "-1"], "--min-seconds"),
    ],
)
def test_run_refuses_bad_options_before_any_run_starts(capsys, tiny_models, accel_home, args, says):
    code, out, err = accel(capsys, "run", str(tiny_models["bert"]), *args)
    one_line_error(code, err, says)
    assert out == "" and not (accel_home / "results.duckdb").exists()


def test_run_refuses_a_model_ref_that_names_nothing(capsys, tmp_path, accel_home):
    code, _, err = accel(capsys, "run", str(tmp_path / "no-such-model"), "--targets", "cpu/onnxruntime")
    one_line_error(code, err, "does not exist")
    assert not (accel_home / "results.duckdb").exists()


def test_worker_refuses_unknown_hardware_and_a_missing_server(capsys, monkeypatch):
    one_line_error(*accel(capsys, "worker", "--hardware", "tpu")[::2], "unknown hardware", "cuda")
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    one_line_error(*accel(capsys, "worker", "--hardware", "cpu")[::2], "PREFECT_API_URL is not set")


@pytest.mark.parametrize("option", ["--prefect-port", "--api-port"])
@pytest.mark.parametrize("port", ["70000", "0", "-5"])
def test_up_refuses_a_port_that_is_not_one(capsys, option, port):
    code, _, err = accel(capsys, "up", option, port)
    one_line_error(code, err, option)


def test_generate_refuses_an_out_folder_it_cannot_write(capsys, tiny_models, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, _, err = accel(
        capsys, "generate", str(tiny_models["bert"]), "--target", "cpu/onnxruntime", "--out", str(blocker / "skills")
    )
    one_line_error(code, err, "--out", "cannot be created")
    code, _, err = accel(
        capsys, "generate", str(tiny_models["bert"]), "--target", "cpu/onnxruntime", "--out", str(blocker)
    )
    one_line_error(code, err, "--out", "is not a folder")


def test_compare_refuses_runs_it_does_not_know(capsys):
    code, _, err = accel(capsys, "compare", "no-such-run", "another-one")
    one_line_error(code, err, "no-such-run", "no measurements")


def test_a_bad_setting_is_one_line_naming_the_variable(capsys, monkeypatch):
    monkeypatch.setenv("ACCEL_DB_TIMEOUT_S", "-1")
    one_line_error(*accel(capsys, "compare", "a", "b")[::2], "ACCEL_DB_TIMEOUT_S", "greater than 0")
