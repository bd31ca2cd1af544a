from __future__ import annotations

import pytest

from chirp_core.errors import InvalidArgument
from chirp_core.paging import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor, encode_cursor, page_size


def test_page_size_follows_aip_158() -> None:
    assert page_size(0) == DEFAULT_LIMIT
    assert page_size(7) == 7
    assert page_size(MAX_LIMIT + 1) == MAX_LIMIT
    with pytest.raises(InvalidArgument) as raised:
        page_size(-1)
    assert raised.value.field == "limit"


def test_cursor_round_trips_and_is_opaque() -> None:
    cursor = encode_cursor("home", 123456789012345, 7)
    assert "123456789012345" not in cursor
    assert decode_cursor(cursor, "home", 2) == (123456789012345, 7)
    assert decode_cursor("", "home", 2) is None


@pytest.mark.parametrize(
    "cursor",
    [
        "not base64 !",
        encode_cursor("replies", 5),
        encode_cursor("home", 5, 6),
        "YWJj",
        encode_cursor("home", -1),
    ],
)
def test_foreign_or_forged_cursors_are_invalid_argument(cursor: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        decode_cursor(cursor, "home", 1)
    assert raised.value.field == "cursor"
