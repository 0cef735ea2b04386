"""Placeholder: the Prefect REST client (httpx, no `import prefect`) lands here."""

from __future__ import annotations


class PrefectClient:
    def __init__(self, api_url: str, ui_url: str | None = None):
        self.api_url = api_url.rstrip("/")
        self.ui_url = (ui_url or self.api_url.removesuffix("/api")).rstrip("/")

    async def health(self) -> bool:
        import httpx

        try:
            async with httpx.AsyncClient(timeout=2.0) as client:
                return (await client.get(f"{self.api_url}/health")).status_code == 200
        except httpx.HTTPError:
            return False

    async def aclose(self) -> None:
        return None
