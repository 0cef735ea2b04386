"""Errors that mean "the caller asked for something that cannot be done", not a bug.

The CLI turns them into exit code 2 with one line; the API into a 4xx with a JSON body.
"""


class ModelRefError(ValueError):
    """A model ref that cannot be resolved to a local transformers model directory."""


class UnsupportedModelError(ValueError):
    """The model's architecture is outside the six families accel drives."""
