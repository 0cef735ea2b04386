"""The peers' own virtual environments, made on demand under $ACCEL_HOME/cache/peer-venvs/<name>.

A peer whose pins do not co-install with this project's (optimum-intel wants transformers<5.6) gets
a venv of its own. torch goes in first, at the version this project's venv has (pip's find-links
pick the local CPU wheel), and stays pinned by a constraints file so no later requirement swaps it
for a CUDA build from the index. A venv is complete only once its stamp (a hash of its pins) is
written; an incomplete or differently pinned one is made again.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

STAMP = ".accel-peer-venv.json"


@dataclass(frozen=True)
class PeerVenv:
    name: str
    requirements: tuple[str, ...]
    # Pins that must hold for every later install into this venv (torch's companions).
    constraints: tuple[str, ...] = ()
    # Installed as dependencies but broken here, removed after the install.
    remove: tuple[str, ...] = ()


def _torch_pin() -> str:
    # The local version label (+cpu) is left out: "torch==2.13.0" matches the local wheel and pip prefers it.
    return "torch==" + metadata.version("torch").split("+")[0]


def peer_venvs() -> dict[str, PeerVenv]:
    ort = metadata.version("onnxruntime")
    ov = metadata.version("openvino")
    return {
        "openvino": PeerVenv(
            "openvino",
            (
                "optimum-intel[openvino]==2.2.0",
                "optimum==2.3.0",
                f"openvino=={ov}",
                f"openvino-genai=={ov}",
                f"openvino-tokenizers=={ov}",
                "transformers==5.5.4",
                "huggingface-hub==1.21.0",
                "tokenizers==0.22.2",
                "nncf==3.4.0",
                "psutil",
            ),
            constraints=("torchvision==0.28.0",),
            # Its wheel on the index is built against CUDA torch: with the CPU torch its operators fail to
            # register and importing transformers fails with it. optimum-intel's export never uses it.
            remove=("torchvision",),
        ),
        # Its runtime needs only onnxruntime; its model builder needs torch + transformers. The same
        # onnxruntime as accel's own skill, so the two differ only in how they drive it.
        "onnxruntime-genai": PeerVenv(
            "onnxruntime-genai",
            (
                "onnxruntime-genai==0.18.0",
                f"onnxruntime=={ort}",
                f"transformers=={metadata.version('transformers')}",
                f"onnx=={metadata.version('onnx')}",
                f"onnx-ir=={metadata.version('onnx-ir')}",  # the builder imports it without declaring it
                "psutil",
            ),
        ),
    }


@dataclass(frozen=True)
class VenvInfo:
    name: str
    python: Path
    made_now: bool
    install_s: float
    size_mib: float


def _folder_mib(path: Path) -> float:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            file = Path(root) / name
            if not file.is_symlink():
                total += file.stat().st_size
    return total / 2**20


def _pins_hash(venv: PeerVenv, torch_pin: str) -> str:
    text = "\n".join([torch_pin, *venv.constraints, *venv.requirements, *venv.remove, sys.version.split()[0]])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def ensure_venv(venv: PeerVenv, root: Path, log=print) -> VenvInfo:
    """The venv, made if missing or pinned differently; raises RuntimeError with pip's last lines if pip fails."""
    path = root / venv.name
    python = path / "bin" / "python"
    torch_pin = _torch_pin()
    want = _pins_hash(venv, torch_pin)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two benchmark runs never build the same venv at once
        stamp = path / STAMP
        if stamp.is_file():
            recorded = json.loads(stamp.read_text())
            if recorded.get("pins") == want:
                return VenvInfo(venv.name, python, False, recorded["install_s"], recorded["size_mib"])
        log(f"making the {venv.name} peer venv at {path} (pip, a few minutes the first time)")
        shutil.rmtree(path, ignore_errors=True)
        started = time.perf_counter()
        constraints = path / "constraints.txt"
        _run([sys.executable, "-m", "venv", str(path)])
        constraints.write_text("\n".join([torch_pin, *venv.constraints]) + "\n")
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        _run([*pip, torch_pin])
        _run([*pip, "--constraint", str(constraints), *venv.requirements])
        if venv.remove:
            _run([str(python), "-m", "pip", "uninstall", "--yes", "--quiet", *venv.remove])
        install_s = round(time.perf_counter() - started, 1)
        size = round(_folder_mib(path), 1)
        stamp.write_text(json.dumps({"pins": want, "install_s": install_s, "size_mib": size}) + "\n")
        return VenvInfo(venv.name, python, True, install_s, size)


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        lines = [line for line in (done.stderr or done.stdout).splitlines() if "is ignored" not in line]
        raise RuntimeError(f"{' '.join(command[:6])} ... failed: " + " | ".join(lines[-6:]))
