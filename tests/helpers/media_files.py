"""Small, structurally valid media files made in the test: the headers a sniffer and a size parser
read are real; the pixel data is minimal. `size` pads a file to an exact length."""

from __future__ import annotations

import struct
import zlib


def _pad(data: bytes, size: int | None) -> bytes:
    if size is None:
        return data
    assert size >= len(data), f"{size} < {len(data)}"
    return data + b"\0" * (size - len(data))


def png(width: int, height: int, *, size: int | None = None) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = b"".join(b"\0" + b"\0\0\0" * width for _ in range(height))
    data = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
    return _pad(data, size)


def jpeg(width: int, height: int, *, exif_bytes: int = 0, size: int | None = None) -> bytes:
    """Baseline JPEG headers; `exif_bytes` of APP1 segments (each at most 64 KiB) before the frame
    header push it past the first read."""

    def segment(marker: int, body: bytes) -> bytes:
        return bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body

    data = b"\xff\xd8" + segment(0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0")
    remaining = exif_bytes
    while remaining > 0:
        part = min(remaining, 65_000)
        data += segment(0xE1, b"Exif\0\0" + b"\x2a" * (part - 6))
        remaining -= part
    data += segment(0xDB, b"\0" + bytes(range(1, 65)))
    data += segment(0xC0, struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00")
    data += segment(0xC4, b"\0" + b"\x01" + b"\0" * 15 + b"\0")
    data += segment(0xDA, b"\x01\x01\x00\x00\x3f\x00") + b"\x7f" * 16 + b"\xff\xd9"
    return _pad(data, size)


def gif(width: int, height: int, *, size: int | None = None) -> bytes:
    data = (
        b"GIF89a"
        + struct.pack("<HHBBB", width, height, 0x80, 0, 0)
        + b"\0\0\0\xff\xff\xff"
        + b",\0\0\0\0"
        + struct.pack("<HH", width, height)
        + b"\0\x02\x02\x44\x01\0;"
    )
    return _pad(data, size)


def webp_lossy(width: int, height: int, *, size: int | None = None) -> bytes:
    frame = b"\x10\x02\x00" + b"\x9d\x01\x2a" + struct.pack("<HH", width, height) + b"\0" * 10
    return _riff(b"VP8 " + struct.pack("<I", len(frame)) + frame, size)


def webp_lossless(width: int, height: int, *, size: int | None = None) -> bytes:
    bits = (width - 1) | ((height - 1) << 14)
    body = b"\x2f" + bits.to_bytes(4, "little") + b"\0" * 4
    return _riff(b"VP8L" + struct.pack("<I", len(body)) + body, size)


def webp_extended(width: int, height: int, *, size: int | None = None) -> bytes:
    body = b"\x10\0\0\0" + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return _riff(b"VP8X" + struct.pack("<I", len(body)) + body, size)


def _riff(chunks: bytes, size: int | None) -> bytes:
    data = b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WEBP" + chunks
    return _pad(data, size)


def mp4(
    *, brand: bytes = b"isom", compatible: tuple[bytes, ...] = (b"isom", b"mp41"), size: int | None = None
) -> bytes:
    brands = b"".join(compatible)
    ftyp = struct.pack(">I", 16 + len(brands)) + b"ftyp" + brand + b"\0\0\x02\0" + brands
    free = struct.pack(">I", 8) + b"free"
    return _pad(ftyp + free, size)
