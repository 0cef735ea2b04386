"""Import a generated `skill.py` as a module, by path, without importing anything heavy of our own.

The benchmark runner uses it in a fresh process per point, so what it imports is what the measured
process carries: numpy and the skill's runtime, not transformers.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def import_skill(path: Path, name: str) -> ModuleType:
    """Execute `path` as the module `name` (registered in sys.modules while it exists)."""
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module
