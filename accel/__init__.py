"""accel: generate, test and benchmark Hugging Face models on every hardware target."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("accel")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0.0.0+unknown"
