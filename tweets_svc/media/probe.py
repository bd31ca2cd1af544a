"""What an uploaded file really is, from its first bytes: the media type by its magic numbers and,
for images, the pixel size from the header. Pure functions over bytes; no image library, since
reading a few header fields is all that is needed and nothing here ever decodes pixels.

A JPEG keeps its size in a SOF segment that may follow kilobytes of metadata (EXIF, ICC), so
scan_jpeg() walks the segments and says where to read next when the bytes it has run out.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

# Enough for the magic numbers, the PNG, GIF, WebP and MP4 headers, and a JPEG without metadata.
HEAD_BYTES = 1024

_PNG = b"\x89PNG\r\n\x1a\n"
# ISO base media brands of MP4 video. HEIF/AVIF images and QuickTime share the `ftyp` box and are
# told apart by these.
_MP4_BRANDS = frozenset(
    {b"isom", b"iso2", b"iso3", b"iso4", b"iso5", b"iso6", b"iso8", b"iso9", b"mp41", b"mp42"}
    | {b"mp71", b"avc1", b"M4V ", b"dash", b"msnv", b"f4v "}
)
_IMAGE_BRANDS = frozenset({b"heic", b"heix", b"mif1", b"msf1", b"avif", b"avis"})
# JPEG start-of-frame markers (every SOFn but DHT C4, JPG C8 and DAC CC): they hold the size.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length: TEM and the restart markers.
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
_SOS, _EOI = 0xDA, 0xD9


@dataclass(frozen=True)
class Dimensions:
    width: int
    height: int


@dataclass(frozen=True)
class ReadMore:
    """The scan needs the file's bytes from this absolute offset on."""

    offset: int


def sniff(head: bytes) -> str | None:
    """The media type the first bytes show, or None when they are not a type we take."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(_PNG):
        return "image/png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if _is_mp4(head):
        return "video/mp4"
    return None


def _is_mp4(head: bytes) -> bool:
    if len(head) < 16 or head[4:8] != b"ftyp":
        return False
    box_size = int.from_bytes(head[:4], "big")
    major = head[8:12]
    # The compatible brands follow the major brand and the minor version.
    compatible = {head[i : i + 4] for i in range(16, min(box_size, len(head)) - 3, 4)}
    if major in _IMAGE_BRANDS:
        return False
    return major in _MP4_BRANDS or bool(compatible & _MP4_BRANDS)


def image_size(content_type: str, head: bytes) -> Dimensions | ReadMore | None:
    """The pixel size from the first bytes of an image of `content_type`; ReadMore (JPEG only)
    when it lies further in; None when the header is not valid."""
    if content_type == "image/png":
        return _png(head)
    if content_type == "image/gif":
        return _gif(head)
    if content_type == "image/webp":
        return _webp(head)
    if content_type == "image/jpeg":
        return scan_jpeg(head, 0)
    return None


def _png(head: bytes) -> Dimensions | None:
    # The signature, then the IHDR chunk: length, "IHDR", width, height (big-endian).
    if len(head) < 24 or head[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", head[16:24])
    return _dimensions(width, height)


def _gif(head: bytes) -> Dimensions | None:
    # The logical screen descriptor after the 6-byte signature (little-endian).
    if len(head) < 10:
        return None
    width, height = struct.unpack("<HH", head[6:10])
    return _dimensions(width, height)


def _webp(head: bytes) -> Dimensions | None:
    chunk = head[12:16]
    if chunk == b"VP8 " and len(head) >= 30:
        # Lossy: a 3-byte frame tag, the start code 9d 01 2a, then 14-bit width and height.
        if head[23:26] != b"\x9d\x01\x2a":
            return None
        width, height = struct.unpack("<HH", head[26:30])
        return _dimensions(width & 0x3FFF, height & 0x3FFF)
    if chunk == b"VP8L" and len(head) >= 25:
        # Lossless: the signature byte 0x2f, then width - 1 and height - 1 in 14 bits each.
        if head[20] != 0x2F:
            return None
        bits = int.from_bytes(head[21:25], "little")
        return _dimensions((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if chunk == b"VP8X" and len(head) >= 30:
        # Extended: canvas width - 1 and height - 1 in 24 bits each, after 4 bytes of flags.
        width = int.from_bytes(head[24:27], "little") + 1
        height = int.from_bytes(head[27:30], "little") + 1
        return _dimensions(width, height)
    return None


def scan_jpeg(data: bytes, start: int) -> Dimensions | ReadMore | None:
    """Walk JPEG segments in `data`, the file's bytes from absolute offset `start` (0: the file's
    beginning, SOI included; otherwise a segment's marker, as ReadMore named it)."""
    if start == 0:
        if not data.startswith(b"\xff\xd8"):
            return None
        position = 2
    else:
        position = 0
    while True:
        if position + 4 > len(data):
            return ReadMore(start + position)
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # a fill byte before the marker
            position += 1
            continue
        if marker in _STANDALONE:
            position += 2
            continue
        if marker in (_SOS, _EOI):  # image data or the end, and no frame header before it
            return None
        (length,) = struct.unpack(">H", data[position + 2 : position + 4])
        if length < 2:
            return None
        if marker in _SOF:
            if position + 9 > len(data):
                return ReadMore(start + position)
            height, width = struct.unpack(">HH", data[position + 5 : position + 9])
            return _dimensions(width, height)
        position += 2 + length


def _dimensions(width: int, height: int) -> Dimensions | None:
    return Dimensions(width, height) if width > 0 and height > 0 else None
