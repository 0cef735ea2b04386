"""Placeholder: the WebSocket relay of Prefect events lands here."""

from __future__ import annotations

from accel.api.prefect import PrefectClient


class RunRelay:
    def __init__(self, prefect: PrefectClient):
        self.prefect = prefect

    async def aclose(self) -> None:
        return None
