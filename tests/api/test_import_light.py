"""The API process never imports the ML stack (nor Prefect's SDK): it starts in about a second."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "transformers", "onnxruntime", "openvino", "prefect")

PROBE = f"""
import json, sys
from fastapi.testclient import TestClient
from accel.api.app import create_app
from accel.flows.results import ChainResult, PipelineResult  # what the API returns about chains
from accel.tasks.benchmark import BenchConfig  # what it validates benchmark requests with
from accel.tasks.levels import LEVEL_NAMES
from accel.tasks.errors import REQUEST_ERRORS
BenchConfig.model_validate({{"batches": [1, 8]}})
with TestClient(create_app()) as client:
    status = client.get("/api/health").status_code
print(json.dumps({{"status": status, "heavy": [m for m in {HEAVY!r} if m in sys.modules]}}))
"""


def test_the_app_starts_without_the_ml_stack(accel_home):
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["status"] == 200
    assert found["heavy"] == [], f"the API imported {found['heavy']}"
