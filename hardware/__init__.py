"""What this machine has (`detect`), targets (`Target`), and the work pool of each hardware kind.

Imports nothing else of accel: every other layer may use it.
"""

from accel.hardware.detect import detect
from accel.hardware.profile import HardwareProfile
from accel.hardware.targets import (
    HARDWARE,
    PRECISIONS,
    RUNTIMES,
    SUPPORTED_PRECISIONS,
    Target,
    TargetError,
    TargetStatus,
    all_targets,
    available_targets,
    parse_targets,
    target_status,
    work_pool_name,
)

__all__ = [
    "HARDWARE",
    "PRECISIONS",
    "RUNTIMES",
    "SUPPORTED_PRECISIONS",
    "HardwareProfile",
    "Target",
    "TargetError",
    "TargetStatus",
    "all_targets",
    "available_targets",
    "detect",
    "parse_targets",
    "target_status",
    "work_pool_name",
]
