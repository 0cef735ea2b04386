"""`Annotated` dependencies, so route signatures stay one line: settings, the results store, Prefect, the relay,
the API keys and the caller (the principal api/auth.py's guard authenticated)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from accel.api.auth import Principal, current_principal
from accel.api.prefect import PrefectClient
from accel.api.relay import RunRelay
from accel.settings import Settings
from accel.storage import ResultsStore
from accel.storage.keys import KeyStore


def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_store(request: Request) -> ResultsStore:
    """The DuckDB results file this API owns (under `accel up` it is the one writer)."""
    return request.app.state.store


def get_prefect(request: Request) -> PrefectClient:
    return request.app.state.prefect


def get_relay(request: Request) -> RunRelay:
    return request.app.state.relay


def get_keys(request: Request) -> KeyStore:
    return request.app.state.keys


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
StoreDep = Annotated[ResultsStore, Depends(get_store)]
PrefectDep = Annotated[PrefectClient, Depends(get_prefect)]
RelayDep = Annotated[RunRelay, Depends(get_relay)]
KeysDep = Annotated[KeyStore, Depends(get_keys)]
PrincipalDep = Annotated[Principal, Depends(current_principal)]
