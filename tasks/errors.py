"""Errors that mean "the caller asked for something that cannot be done", not a bug.

The CLI turns them into exit code 2 with one line; the API into a 4xx with a JSON body.
"""


class ModelRefError(ValueError):
    """A model ref that cannot be resolved to a local transformers model directory."""


class UnsupportedModelError(ValueError):
    """The model's architecture is outside the six families accel drives."""


class UnsupportedTargetError(ValueError):
    """The target cannot be generated for: the family's template lacks it, or this machine cannot run it."""


class GenerationError(RuntimeError):
    """Generation ran and failed: no exporter produced an artifact that matches the reference."""


class SkillDirError(ValueError):
    """A folder that is not a generated skill (no skill.py and manifest.json), or a bad test request."""
