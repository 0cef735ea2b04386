"""The `accel` command line.

Library chatter is noise on a CLI's stderr; these defaults are set here, before any library is
imported, because transformers and huggingface_hub read them once, at import.
"""

import os

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' "Loading weights" bars
