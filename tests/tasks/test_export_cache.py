"""onnxruntime and OpenVINO skills of one model share one validated ONNX export (tasks/export_cache)."""

import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from accel.settings import get_settings
from accel.tasks.export_cache import file_sha256
from accel.tasks.generate import generate
from accel.tasks.validate import validate

ROOT = Path(__file__).resolve().parents[2]


def entries() -> list[Path]:
    root = get_settings().cache_dir / "onnx"
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else []


def shared(skill) -> dict:
    return skill.manifest["artifact"]["shared_export"]


def test_onnxruntime_then_openvino_export_once_and_both_skills_pass(tiny_models, tmp_path):
    bert = str(tiny_models["bert"])
    ort = generate(bert, "cpu/onnxruntime", out_dir=tmp_path)
    ov = generate(bert, "cpu/openvino", out_dir=tmp_path)

    assert (shared(ort)["reused"], shared(ov)["reused"]) == (False, True)  # the second one did not export
    [entry] = entries()
    assert shared(ort)["key"] == shared(ov)["key"] == entry.name
    meta = json.loads((entry / "meta.json").read_text())
    cached = file_sha256(entry / "model.onnx")
    assert meta["files"]["model.onnx"]["sha256"] == cached == shared(ov)["sha256"]
    for skill in (ort, ov):  # each skill dir has the export's bytes, and says which export they are
        assert file_sha256(skill.path / "model.onnx") == cached == skill.manifest["artifact"]["sha256"]
        report = validate(skill.path, "basic", record=False)
        assert report.passed, [(c.check, c.status, c.message) for c in report.checks]

    # A forced regeneration keeps its skill id and takes the shared export again.
    again = generate(bert, "cpu/onnxruntime", out_dir=tmp_path, force=True)
    assert again.skill_id == ort.skill_id and shared(again)["reused"] is True


def test_a_damaged_or_missing_shared_export_is_made_again_not_trusted(tiny_models, tmp_path):
    bert = str(tiny_models["bert"])
    first = generate(bert, "cpu/onnxruntime", out_dir=tmp_path)
    [entry] = entries()
    good = file_sha256(entry / "model.onnx")

    # Damaged in place through a skill's hardlink: the skill dir and the cache share those bytes.
    with open(first.path / "model.onnx", "r+b") as handle:
        handle.seek(100)
        handle.write(b"\x00" * 64)
    assert file_sha256(entry / "model.onnx") != good
    remade = generate(bert, "cpu/openvino", out_dir=tmp_path)
    assert shared(remade)["reused"] is False and shared(remade)["sha256"] == good
    assert file_sha256(entry / "model.onnx") == good == file_sha256(remade.path / "model.onnx")

    # Missing (its meta still names it).
    (entry / "model.onnx").unlink()
    again = generate(bert, "cpu/onnxruntime", out_dir=tmp_path, force=True)
    assert shared(again)["reused"] is False and file_sha256(entry / "model.onnx") == good
    assert [e.name for e in entries()] == [entry.name]


_GENERATE = """
import json, sys
from pathlib import Path
from accel.tasks.generate import generate
print("ready", flush=True)
sys.stdin.readline()
skill = generate(sys.argv[1], sys.argv[2], out_dir=Path(sys.argv[3]))
print(json.dumps(skill.manifest["artifact"]["shared_export"]), flush=True)
"""


def blocked_on(path: Path, pid: int) -> bool:
    """`pid` waits for the flock on `path` (the kernel's /proc/locks marks a waiter with ->)."""
    inode = f":{path.stat().st_ino} "
    return any(
        "->" in line and f" {pid} " in line and inode in line for line in Path("/proc/locks").read_text().splitlines()
    )


def test_a_generation_in_another_process_waits_for_the_export_being_made_then_reuses_it(
    tiny_models, tmp_path, accel_home
):
    bert = str(tiny_models["bert"])
    key = shared(generate(bert, "cpu/onnxruntime", out_dir=tmp_path / "here"))["key"]
    lock = get_settings().cache_dir / "onnx" / f"{key}.lock"
    env = {**os.environ, "ACCEL_HOME": str(accel_home), "PYTHONPATH": str(ROOT)}
    other = subprocess.Popen(
        [sys.executable, "-c", _GENERATE, bert, "cpu/openvino", str(tmp_path / "other")],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert other.stdout.readline().strip() == "ready", other.stderr.read()[-2000:]
        with open(lock, "a+") as held:  # as a generation of this export does while it makes and checks it
            fcntl.flock(held, fcntl.LOCK_EX)
            other.stdin.write("go\n")
            other.stdin.flush()
            while not blocked_on(lock, other.pid):
                assert other.poll() is None, "it went on while the export was held: " + other.stderr.read()[-2000:]
                time.sleep(0.05)
            fcntl.flock(held, fcntl.LOCK_UN)
        out, err = other.communicate(timeout=300)
    finally:
        other.kill()
    assert other.returncode == 0, err[-2000:]
    there = json.loads(out.strip().splitlines()[-1])
    [entry] = entries()
    assert there["reused"] is True and there["sha256"] == file_sha256(entry / "model.onnx")
    assert not [p for p in entry.parent.iterdir() if p.name.startswith((".tmp-", ".trash-"))]
