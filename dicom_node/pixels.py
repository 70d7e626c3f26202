"""Is the pixel data all there? A cheap check on the bytes as received, before Success.

A file cut inside its pixel data (a modality that lost its disk, a proxy that dropped the end
of a transfer) parses fine up to the cut; answered Success, the sender never re-sends and the
job fails later on "pixel data less than expected". The check never decodes: for native pixel
data it compares the element's length with Rows × Columns × SamplesPerPixel × BitsAllocated ×
NumberOfFrames and with the bytes actually present; for encapsulated pixel data it walks the
item headers (Basic Offset Table, then one per fragment, a few per frame) to the sequence
delimiter, skipping the fragments' contents. Cost: a few struct reads per instance.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from pydicom.uid import UID

from dicom_node import statuses
from dicom_node.statuses import IngestError

PIXEL_DATA = 0x7FE00010
ITEM = (0xFFFE, 0xE000)
SEQUENCE_DELIMITER = (0xFFFE, 0xE0DD)
UNDEFINED = 0xFFFFFFFF
# Explicit-VR elements with a 2-byte reserved field and a 4-byte length (PS3.5 7.1.2).
_LONG_VRS = frozenset({b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"SQ", b"UT", b"UN", b"UC", b"UR", b"SV", b"UV"})


@dataclass(frozen=True, slots=True)
class PixelShape:
    """What the header says the pixel data holds; None where the header does not say."""

    rows: int | None
    columns: int | None
    samples: int | None
    bits_allocated: int | None
    frames: int | None
    photometric: str = ""
    image: bool = False  # an image storage SOP class: Pixel Data is required whatever the header says


    def expected_bytes(self) -> int | None:
        if not (self.rows and self.columns and self.bits_allocated):
            return None
        samples = self.samples or 1
        if self.photometric == "YBR_FULL_422":  # native 4:2:2 keeps two samples per pixel (PS3.3 C.7.6.3.1.2)
            samples = 2
        bits = self.rows * self.columns * samples * (self.frames or 1) * self.bits_allocated
        return (bits + 7) // 8


def is_image_class(sop_class_uid: str) -> bool:
    """An image storage SOP class (CR, DX, CT, MR, SC, ...: PS3.4 names them "... Image Storage"),
    whose instances always carry pixel data (Float/Double Float Pixel Data are read before 7FE0,0010
    and end the check there)."""
    try:
        return "Image Storage" in UID(sop_class_uid).name
    except ValueError:
        return False


def _incomplete(why: str) -> IngestError:
    return IngestError(statuses.PIXEL_DATA_INCOMPLETE, f"refused: pixel data incomplete ({why})")


def check_complete(stream: BinaryIO, pos: int, *, implicit_vr: bool, little_endian: bool, shape: PixelShape) -> None:
    """Raise IngestError(PIXEL_DATA_INCOMPLETE) unless the data set's pixel data is whole.

    `stream` is the data set (seekable; only a few element and item headers are read, never the
    pixels: `getbuffer()` on a received buffer would copy it); `pos` is where header parsing
    stopped: the first element at or after (7FE0,0010), or the end of the data set. An image (an
    image storage SOP class, or Rows, Columns, BitsAllocated given) with no Pixel Data is incomplete
    too: a file cut inside its header, before the image module, would otherwise pass.
    """
    end = stream.seek(0, 2)
    order = "<" if little_endian else ">"

    def read(at: int, n: int) -> bytes:
        stream.seek(at)
        return stream.read(n)

    if end - pos < 8:
        if pos < end or shape.image or shape.expected_bytes():
            raise _incomplete("no pixel data element")
        return
    group, element = struct.unpack(order + "HH", read(pos, 4))
    if (group << 16 | element) != PIXEL_DATA:
        if shape.image or shape.expected_bytes():
            raise _incomplete("no pixel data element")
        return
    if implicit_vr:
        (length,) = struct.unpack(order + "I", read(pos + 4, 4))
        value = pos + 8
    else:
        vr = read(pos + 4, 2)
        if vr in _LONG_VRS:
            if end - pos < 12:
                raise _incomplete("element header cut")
            (length,) = struct.unpack(order + "I", read(pos + 8, 4))
            value = pos + 12
        else:
            (length,) = struct.unpack(order + "H", read(pos + 6, 2))
            value = pos + 8
    if length == UNDEFINED:
        _walk_fragments(read, value, end)
        return
    if value + length > end:
        raise _incomplete("shorter than its length")
    expected = shape.expected_bytes()
    if expected is not None and length < expected:
        raise _incomplete("less than the image size")


def _walk_fragments(read: Callable[[int, int], bytes], pos: int, end: int) -> None:
    """Encapsulated pixel data: item headers (always little endian) up to the delimiter."""
    items = 0
    while True:
        if end - pos < 8:
            raise _incomplete("no sequence delimiter")
        group, element, length = struct.unpack("<HHI", read(pos, 8))
        pos += 8
        if (group, element) == SEQUENCE_DELIMITER:
            if items < 2:  # the Basic Offset Table item, then at least one fragment
                raise _incomplete("no fragment")
            return
        if (group, element) != ITEM or length == UNDEFINED:
            raise _incomplete("malformed fragment")
        if pos + length > end:
            raise _incomplete("last fragment cut")
        pos += length
        items += 1
