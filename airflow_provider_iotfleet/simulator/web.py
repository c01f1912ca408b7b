"""Request and response helpers the vendor routers share."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse

MALFORMED = object()


def answer(status: int, body: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=headers)


async def read_json(request: Request) -> Any:
    """Return the parsed JSON body, ``None`` when empty, or :data:`MALFORMED`."""
    raw = await request.body()
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return MALFORMED


def basic_credentials(request: Request) -> tuple[str, str] | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return user, password


def bearer_token(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


async def read_form(request: Request) -> dict[str, str]:
    """Return an ``application/x-www-form-urlencoded`` body (first value per key)."""
    pairs = parse_qsl((await request.body()).decode(errors="replace"), keep_blank_values=True)
    return dict(reversed(pairs))
