"""Aggregate answers cached until the next write: the API is the results file's one writer (it holds it
open), so a query's answer changes only when a write goes through this process's store.

Keyed by the store's write generation, the path and the query string, so a write makes every earlier
entry unreachable at once; entries also expire after a few seconds, for answers that depend on the
clock (`history?days=`). Only successful answers are kept (an error is computed again), and nothing is
cached for a store that is not held (another process could write the file behind it).
"""

from __future__ import annotations

import functools
import inspect
import threading
import time
import typing
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from fastapi import Request

TTL_S = 5.0
SIZE = 512


class AggregateCache:
    def __init__(self, size: int = SIZE, ttl_s: float = TTL_S):
        self.size, self.ttl_s = size, ttl_s
        self.hits = self.misses = 0
        self._entries: OrderedDict[tuple, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, store: Any, request: Request, compute: Callable[[], Any]) -> Any:
        if not getattr(store, "held", False):
            return compute()
        key = (store.generation, request.url.path, tuple(sorted(request.query_params.multi_items())))
        now = time.monotonic()
        with self._lock:
            found = self._entries.get(key)
            if found is not None and now - found[0] < self.ttl_s:
                self._entries.move_to_end(key)
                self.hits += 1
                return found[1]
            self.misses += 1
        value = compute()
        with self._lock:
            self._entries[key] = (now, value)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return value


def cached(route: Callable[..., Any]) -> Callable[..., Any]:
    """A results route whose answer is cached (it must take `store`); FastAPI sees its own parameters plus
    the request."""
    hints = typing.get_type_hints(route, include_extras=True)
    signature = inspect.signature(route)
    parameters = [inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request)]
    parameters += [p.replace(annotation=hints.get(p.name, p.annotation)) for p in signature.parameters.values()]

    @functools.wraps(route)
    def answer(request: Request, **kwargs: Any) -> Any:
        cache: AggregateCache = request.app.state.aggregates
        return cache.get(kwargs["store"], request, lambda: route(**kwargs))

    answer.__signature__ = signature.replace(parameters=parameters, return_annotation=hints.get("return"))
    return answer
