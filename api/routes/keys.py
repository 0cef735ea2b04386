"""`/api/keys` (admin only, by api/auth.py's table): list keys, create one (its secret answered once), revoke one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from accel.api.auth import Scope
from accel.api.deps import KeysDep, PrincipalDep
from accel.storage.keys import ApiKeyRecord, KeyNotFoundError
from accel.tasks.errors import RequestError

router = APIRouter(prefix="/api/keys", tags=["keys"])
KeyId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[0-9a-f]+$")]


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scopes: list[Scope] = Field(min_length=1, max_length=4, examples=[["run"]])
    name: str | None = Field(None, min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")
    expires_days: float | None = Field(None, gt=0, le=3650, description="Days until it stops working (default: never)")


class CreatedKey(BaseModel):
    """The new key's record and the key itself: shown this once, never again (only its hash is kept)."""

    key: str = Field(description="Send it as `Authorization: Bearer <key>` or `X-API-Key: <key>`")
    record: ApiKeyRecord


class KeyList(BaseModel):
    keys: list[ApiKeyRecord]


class KeyNotKnownError(RequestError):
    status_code = 404


@router.get("")
def list_keys(keys: KeysDep) -> KeyList:
    """Every key: id, name, scopes, created, expires, last used, revoked (never a secret)."""
    return KeyList(keys=keys.list())


@router.post("", status_code=201)
def create_key(body: KeyCreate, keys: KeysDep, principal: PrincipalDep) -> CreatedKey:
    name = body.name or f"{'+'.join(body.scopes)} key (made by {principal.name})"
    record, key = keys.create(body.scopes, name, body.expires_days)
    return CreatedKey(key=key, record=record)


@router.delete("/{key_id}")
def revoke_key(key_id: KeyId, keys: KeysDep) -> ApiKeyRecord:
    """Revoke a key: every request with it is refused from now on (its record stays, for the runs it started)."""
    try:
        return keys.revoke(key_id)
    except KeyNotFoundError:
        raise KeyNotKnownError(f"no API key {key_id!r}: see GET /api/keys") from None
