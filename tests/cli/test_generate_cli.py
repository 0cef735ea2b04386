"""`accel generate` and `accel templates` from the command line."""

import json

from tests.cli.test_cli import accel


def test_generate_json_reports_the_skill_and_records_it(capsys, tiny_models, tmp_path, accel_home):
    code, out, _ = accel(
        capsys,
        "generate",
        str(tiny_models["llama"]),
        "--target",
        "cpu/onnxruntime",
        "--out",
        str(tmp_path / "skills"),
        "--json",
    )
    assert code == 0
    doc = json.loads(out)
    assert doc["manifest"]["target"]["target"] == "cpu/onnxruntime"
    assert doc["manifest"]["validation"]["generation_tokens_equal"] is True
    from accel.storage import ResultsStore

    assert ResultsStore(accel_home / "results.duckdb").get_skill(doc["skill_id"]).family == "text-generation"
    code, out, _ = accel(
        capsys,
        "generate",
        str(tiny_models["llama"]),
        "-t",
        "cpu/onnxruntime",
        "--out",
        str(tmp_path / "skills"),
    )
    assert code == 0 and "existing, reused" in out and "max |diff|" in out


def test_generate_refuses_bad_targets_with_exit_2(capsys, tiny_models, tmp_path):
    for target, says in (
        ("cpu/tensorrt", "unknown runtime"),
        ("mps/torch", "cannot run on this machine"),
        ("cpu/torch:fp16", "supported: fp32, bf16"),
    ):
        code, out, err = accel(capsys, "generate", str(tiny_models["bert"]), "-t", target, "--out", str(tmp_path))
        assert code == 2 and out == "" and says in err and err.count("\n") == 1


def test_templates_lists_every_family_with_what_runs_here(capsys):
    code, out, _ = accel(capsys, "templates", "--json")
    entries = json.loads(out)
    assert code == 0 and len(entries) == 6
    assert all("cpu/onnxruntime" in e["targets_here"] for e in entries)
    code, out, _ = accel(capsys, "templates")
    assert code == 0 and "text_generation" in out and "runtimes:" in out
