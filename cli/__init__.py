"""The `accel` command line.

Defaults set here, before any library is imported, because transformers, huggingface_hub and Prefect
read them once, at import: quiet libraries, Prefect's state under ACCEL_HOME, no analytics.
"""

import os
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' "Loading weights" bars
os.environ.setdefault(
    "PREFECT_HOME", str(Path(os.environ.get("ACCEL_HOME", ".accel")).expanduser().resolve() / "prefect")
)
Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)  # Prefect's SQLite will not create it
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
# A fresh ephemeral server needs ~20 s on 2 cores; Prefect's default allows 20.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
