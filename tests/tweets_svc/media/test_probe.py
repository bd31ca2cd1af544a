"""The sniffer and the header parsers, on files made here."""

from __future__ import annotations

import pytest

from tests.helpers import media_files as files
from tweets_svc.media.probe import HEAD_BYTES, Dimensions, ReadMore, image_size, scan_jpeg, sniff


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (files.png(3, 2), "image/png"),
        (files.jpeg(3, 2), "image/jpeg"),
        (files.gif(3, 2), "image/gif"),
        (files.webp_lossy(3, 2), "image/webp"),
        (files.webp_lossless(3, 2), "image/webp"),
        (files.webp_extended(3, 2), "image/webp"),
        (files.mp4(), "video/mp4"),
        (files.mp4(brand=b"mp42"), "video/mp4"),
        (files.mp4(brand=b"XAVC", compatible=(b"XAVC", b"mp42", b"iso2")), "video/mp4"),
    ],
)
def test_sniff_names_each_type_by_its_magic_numbers(data: bytes, content_type: str) -> None:
    assert sniff(data[:HEAD_BYTES]) == content_type


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello, world",
        b"<svg xmlns='http://www.w3.org/2000/svg'/>",
        b"%PDF-1.7\n",
        files.mp4(brand=b"heic", compatible=(b"mif1", b"heic")),  # a HEIF image, not a video
        files.mp4(brand=b"qt  ", compatible=(b"qt  ",)),  # QuickTime
        b"RIFF\0\0\0\0WAVEfmt ",
    ],
)
def test_sniff_rejects_everything_else(data: bytes) -> None:
    assert sniff(data) is None


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (files.png(640, 480), "image/png"),
        (files.jpeg(640, 480), "image/jpeg"),
        (files.gif(640, 480), "image/gif"),
        (files.webp_lossy(640, 480), "image/webp"),
        (files.webp_lossless(640, 480), "image/webp"),
        (files.webp_extended(640, 480), "image/webp"),
    ],
)
def test_image_size_reads_the_header(data: bytes, content_type: str) -> None:
    assert image_size(content_type, data[:HEAD_BYTES]) == Dimensions(640, 480)


def test_a_jpeg_frame_header_behind_metadata_is_reached_by_following_segments() -> None:
    data = files.jpeg(1024, 768, exif_bytes=150_000)
    found = image_size("image/jpeg", data[:HEAD_BYTES])
    reads = 1
    while isinstance(found, ReadMore):
        assert found.offset > 0
        found = scan_jpeg(data[found.offset : found.offset + 4096], found.offset)
        reads += 1
    assert found == Dimensions(1024, 768)
    # One read per metadata segment, not one per 4 KiB of the file.
    assert reads <= 5


@pytest.mark.parametrize(
    ("content_type", "data"),
    [
        ("image/png", files.png(3, 2)[:20]),
        ("image/png", files.png(0, 2)),
        ("image/gif", b"GIF89a"),
        ("image/webp", b"RIFF\0\0\0\0WEBPVP8 \0\0\0\0" + b"\0" * 20),
        ("image/jpeg", b"\xff\xd8\xff\xda\x00\x02"),  # image data before any frame header
        ("image/jpeg", b"\xff\xd8\x00\x00\x00\x00"),
    ],
)
def test_broken_headers_have_no_size(content_type: str, data: bytes) -> None:
    assert image_size(content_type, data) is None
