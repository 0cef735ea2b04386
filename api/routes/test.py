"""Routes of test (filled in by its own change)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/test", tags=["test"])
