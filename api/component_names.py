"""The names of the component APIs (api/components.py has their routers), importable without FastAPI:
`accel serve --help` and its argument check need them, every other command imports nothing of the API."""

from __future__ import annotations

from typing import Literal, get_args

from accel.tasks.errors import RequestError

Component = Literal["test", "generator", "benchmark", "results"]
COMPONENT_NAMES: tuple[Component, ...] = get_args(Component)


def check_component(name: str) -> Component:
    """`name` as a component; a request error naming the accepted ones otherwise."""
    if name not in COMPONENT_NAMES:
        raise RequestError(f"unknown component {name!r}: accepted {', '.join(COMPONENT_NAMES)}")
    return name  # type: ignore[return-value]
