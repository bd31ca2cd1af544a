"""Page sizes and opaque keyset cursors, the same for every list RPC (AIP-158 rules)."""

from __future__ import annotations

import base64
import binascii

from chirp_core.errors import InvalidArgument

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
_CURSOR_VERSION = "c1"


def page_size(limit: int, *, field: str = "limit", maximum: int = MAX_LIMIT) -> int:
    """0 means the default, above the maximum is clamped, negative is an error."""
    if limit < 0:
        raise InvalidArgument(field, f"must not be negative (got {limit})")
    if limit == 0:
        return DEFAULT_LIMIT
    return min(limit, maximum)


def encode_cursor(kind: str, *keys: int) -> str:
    """An opaque token for the keyset position after the last item of a page."""
    text = ":".join([_CURSOR_VERSION, kind, *(str(k) for k in keys)])
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, kind: str, arity: int, *, field: str = "cursor") -> tuple[int, ...] | None:
    """The keys of a cursor made by encode_cursor(kind, ...); None for the empty (first page) cursor."""
    if not cursor:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        version, cursor_kind, *keys = text.split(":")
        values = tuple(int(k) for k in keys)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidArgument(field, "is not a cursor this server issued") from None
    if version != _CURSOR_VERSION or cursor_kind != kind or len(values) != arity or min(values) < 0:
        raise InvalidArgument(field, "is not a cursor this server issued for this list")
    return values
