"""The component APIs the unified server is made of, and the paths each owns.

Each component can run as its own service (`accel serve --component benchmark`), and the unified server
(`accel serve`, what `accel up` runs) either includes it in-process or forwards its paths to an upstream
(`ACCEL_UPSTREAM_BENCHMARK=http://host:8002`, see api/gateway.py). What a component owns is its routers'
path prefixes, so a route added to one of its routers is forwarded with no list to keep in step.
Workflows, hardware, health and key management stay with the unified server: they are the whole
product's, not one component's.
"""

from __future__ import annotations

from fastapi import APIRouter

from accel.api.component_names import COMPONENT_NAMES, Component
from accel.api.routes import benchmark, generator, records, results, test

COMPONENTS: dict[Component, tuple[APIRouter, ...]] = {
    "test": (test.router,),
    "generator": (generator.router,),
    "benchmark": (benchmark.router,),
    "results": (results.router, records.router),
}
assert set(COMPONENTS) == set(COMPONENT_NAMES)


def component_prefixes(component: Component) -> tuple[str, ...]:
    """The path prefixes of `component`'s routes (`/api/benchmark`, ...), each owned by that component alone."""
    return tuple(sorted({router.prefix for router in COMPONENTS[component]}))


def owns(prefix: str, path: str) -> bool:
    """Whether `path` lies under `prefix` (`/api/results` owns `/api/results/summary`, not `/api/resultsx`)."""
    return path == prefix or path.startswith(prefix + "/")
