"""A peer's own form of the model, converted once per model revision under $ACCEL_HOME/cache/peers/.

openvino-genai and optimum-intel read an OpenVINO IR with a stateful KV cache (optimum-intel's
`optimum-cli export openvino`); onnxruntime-genai reads the folder its model builder makes. Both run
in the peer's venv, write into a staging folder and land with one rename, so a failed or interrupted
conversion leaves nothing that looks finished.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

DONE = ".accel-peer-conversion.json"


@dataclass(frozen=True)
class Conversion:
    form: str
    venv: str

    def command(self, python: Path, model: Path, out: Path) -> list[str]:
        if self.form == "openvino-ir-fp32":
            cli = python.parent / "optimum-cli"
            return [str(cli), "export", "openvino", "--model", str(model), "--task", "text-generation-with-past",
                    "--weight-format", "fp32", str(out)]  # fmt: skip
        if self.form == "ort-genai-fp32-cpu":
            return [str(python), "-m", "onnxruntime_genai.models.builder", "-i", str(model), "-o", str(out),
                    "-p", "fp32", "-e", "cpu", "-c", str(out / ".builder-cache")]  # fmt: skip
        raise ValueError(f"no conversion to {self.form}")


CONVERSIONS = {
    "openvino-ir-fp32": Conversion("openvino-ir-fp32", "openvino"),
    "ort-genai-fp32-cpu": Conversion("ort-genai-fp32-cpu", "onnxruntime-genai"),
}


@dataclass(frozen=True)
class Converted:
    path: Path
    made_now: bool
    seconds: float
    size_mib: float


def revision_key(revision: str) -> str:
    return revision.replace(":", "-").replace("/", "-")


def convert(conversion: Conversion, python: Path, model: Path, revision: str, root: Path, log=print) -> Converted:
    """The converted folder for this model revision, made if missing; RuntimeError with the tool's last lines."""
    final = root / revision_key(revision) / conversion.form
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / f".{conversion.form}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / DONE).is_file():
            done = json.loads((final / DONE).read_text())
            return Converted(final, False, done["seconds"], done["size_mib"])
        log(f"converting {model.name} to {conversion.form} (once per revision) in the {conversion.venv} venv")
        staging = final.parent / f".staging-{conversion.form}-{uuid.uuid4().hex[:8]}"
        staging.mkdir()
        started = time.perf_counter()
        try:
            logfile = staging / "conversion.log"
            env = os.environ | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
            with open(logfile, "w") as out:
                done = subprocess.run(
                    conversion.command(python, model, staging), stdout=out, stderr=subprocess.STDOUT, env=env
                )
            if done.returncode != 0:
                tail = [line for line in logfile.read_text().splitlines() if line.strip()][-6:]
                raise RuntimeError(f"{conversion.form} conversion exited {done.returncode}: " + " | ".join(tail))
            shutil.rmtree(staging / ".builder-cache", ignore_errors=True)
            seconds = round(time.perf_counter() - started, 1)
            size = round(sum(f.stat().st_size for f in staging.rglob("*") if f.is_file()) / 2**20, 1)
            (staging / DONE).write_text(json.dumps({"seconds": seconds, "size_mib": size, "model": str(model)}) + "\n")
            shutil.rmtree(final, ignore_errors=True)
            staging.rename(final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return Converted(final, True, seconds, size)
