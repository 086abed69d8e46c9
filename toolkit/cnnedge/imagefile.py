"""Image files read within bounds: the one reader of ``predict``, the demo and training folders.

Before anything is decoded, :func:`probe` checks that the path is a regular file (a FIFO,
device or socket is refused without being opened: reading a FIFO would wait forever), reads the
format and size from the first bytes (PNG, JPEG, BMP and GIF are parsed here; WebP, TIFF and
PGM/PPM by Pillow's lazy ``Image.open``, which reads headers only), refuses an image of more than
:func:`max_pixels` decoded pixels (``CNNEDGE_MAX_PIXELS``, default :data:`MAX_PIXELS`) and a file
larger than an image of that size can take. :func:`read` then reads at most that many bytes.
Decoders (OpenCV, Pillow, TensorFlow) only ever see files that passed.
"""

from __future__ import annotations

import io
import os
import stat
import struct
from typing import BinaryIO, NamedTuple

from cnnedge.errors import CnnedgeError

MAX_PIXELS = 100_000_000  # per decoded image: generous for photos, far below a decompression bomb
MAX_PIXELS_ENV = "CNNEDGE_MAX_PIXELS"
BYTES_PER_PIXEL = 16  # no image file needs more per pixel (32-bit float RGBA TIFF)
SLACK_BYTES = 64 << 20  # metadata an image file may carry (EXIF, ICC profiles, GIF frames)
KINDS = "JPEG, PNG, BMP, GIF, WebP, TIFF or PGM/PPM"
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_PILLOW = {b"RIFF": "WEBP", b"II*\x00": "TIFF", b"MM\x00*": "TIFF"}  # signature -> Pillow format


class Header(NamedTuple):
    kind: str  # jpeg | png | bmp | gif | webp | tiff | pnm
    height: int
    width: int
    channels: int  # after decoding to gray (1) or colour (3)


class BadImage(CnnedgeError):
    """Not an image of a supported kind, or a damaged header; ``reason`` without the file."""

    def __init__(self, name, reason: str):
        super().__init__(f"{name}: cannot decode image ({reason})")
        self.reason = reason


def max_pixels() -> int:
    """The decoded-pixel limit per image: ``CNNEDGE_MAX_PIXELS``, else :data:`MAX_PIXELS`."""
    raw = os.environ.get(MAX_PIXELS_ENV, "").strip().replace("_", "")
    if not raw:
        return MAX_PIXELS
    if not raw.isdigit() or int(raw) < 1:
        raise CnnedgeError(
            f"{MAX_PIXELS_ENV}={os.environ[MAX_PIXELS_ENV]!r}: must be a whole "
            f"number of pixels >= 1 (default {MAX_PIXELS:_})"
        )
    return int(raw)


def megapixels(n: int) -> str:
    if n < 10**6:
        return f"{n:,} pixels"
    return f"{n / 1e6:.4g} MP" if n < 10**9 else f"{n / 1e6:.0f} MP"


def check_pixels(h: int, w: int, name) -> None:
    limit = max_pixels()
    if h * w > limit:
        raise CnnedgeError(
            f"{name}: image is {h}×{w} (H×W) = {megapixels(h * w)}, over the "
            f"{megapixels(limit)} limit for one image; not decoded (set "
            f"{MAX_PIXELS_ENV} to raise the limit)"
        )


def max_file_bytes(h: int, w: int) -> int:
    """The largest file an h×w image can sensibly be: raw pixels at the widest type + metadata."""
    return BYTES_PER_PIXEL * h * w + SLACK_BYTES


# ------------------------------------------------------------------------------ regular files
def _what(mode: int) -> str:
    for test, what in (
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a folder"),
    ):
        if test(mode):
            return what
    return "a special file"


def _not_regular(name, mode: int) -> CnnedgeError:
    return CnnedgeError(
        f"{name}: {_what(mode)}, not a regular file; not opened (only regular files are read)"
    )


def check_regular(path, name=None) -> None:
    """Refuse ``path`` unless it is a regular file (a link to one counts); nothing is opened:
    opening or reading a FIFO, device or socket can block forever."""
    name = path if name is None else name
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        raise CnnedgeError(f"{name}: cannot read ({e.strerror or e})") from None
    if not stat.S_ISREG(mode):
        raise _not_regular(name, mode)


def open_regular(path, name=None) -> BinaryIO:
    """``path`` opened for binary reading after :func:`check_regular`."""
    name = path if name is None else name
    check_regular(path, name)
    try:  # non-blocking: a FIFO swapped in after the check opens at once instead of waiting
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as e:
        raise CnnedgeError(f"{name}: cannot read ({e.strerror or e})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise _not_regular(name, mode)
    return os.fdopen(fd, "rb")


# ------------------------------------------------------------------------------ headers
def header(f: BinaryIO, name="image") -> Header:
    """The kind, size and channels of the image in ``f`` (positioned at its start), from its
    first bytes; :class:`BadImage` for anything else."""
    head = f.read(1024)
    if not head:
        raise CnnedgeError(f"{name}: empty file")
    if head[:2] == b"\xff\xd8":
        return Header("jpeg", *_jpeg(f, head, name))
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        if len(head) < 26 or head[12:16] != b"IHDR":
            raise BadImage(name, "truncated PNG header")
        w, h = struct.unpack(">II", head[16:24])
        color = head[25]
        if h == 0 or w == 0 or color not in (0, 2, 3, 4, 6):
            raise BadImage(name, f"unsupported PNG header ({h}x{w}, color type {color})")
        return Header("png", h, w, 1 if color in (0, 4) else 3)
    if head[:2] == b"BM":
        if len(head) < 30:
            raise BadImage(name, "truncated BMP header")
        if struct.unpack("<I", head[14:18])[0] == 12:
            w, h, _planes, bpp = struct.unpack("<hhHH", head[18:26])
        else:
            w, h, _planes, bpp = struct.unpack("<iiHH", head[18:30])
        if h == 0 or w <= 0:
            raise BadImage(name, f"unsupported BMP size {abs(h)}x{w}")
        return Header("bmp", abs(h), w, 1 if bpp <= 8 else 3)
    if head[:6] in (b"GIF87a", b"GIF89a"):
        if len(head) < 10:
            raise BadImage(name, "truncated GIF header")
        w, h = struct.unpack("<HH", head[6:10])
        if h == 0 or w == 0:
            raise BadImage(name, "GIF with zero size")
        return Header("gif", h, w, 3)
    fmt = _PILLOW.get(head[:4])
    if fmt == "WEBP" and head[8:12] != b"WEBP":
        fmt = None
    if head[:1] == b"P" and head[1:2] in b"123456" and head[2:3].isspace():
        fmt = "PPM"
    if fmt is None:
        raise BadImage(name, f"not a {KINDS} file: unknown signature")
    f.seek(0)
    return _pillow_header(f, fmt, name)


def _pillow_header(f: BinaryIO, fmt: str, name) -> Header:
    import warnings

    try:
        from PIL import Image
    except ImportError:
        raise BadImage(name, f"reading {fmt} files needs Pillow: pip install pillow") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(f, formats=[fmt])  # lazy: the header only
        w, h = im.size
        mode = im.mode
    except Image.DecompressionBombError:
        raise CnnedgeError(
            f"{name}: image is over {megapixels(2 * Image.MAX_IMAGE_PIXELS)}, "
            f"over the {megapixels(max_pixels())} limit for one image; not "
            f"decoded"
        ) from None
    except Exception as e:  # noqa: BLE001 - any header Pillow cannot parse is a damaged file
        raise BadImage(name, f"damaged {fmt} header: {type(e).__name__}") from None
    if h == 0 or w == 0:
        raise BadImage(name, f"{fmt} image with zero size")
    kind = "pnm" if fmt == "PPM" else fmt.lower()
    return Header(kind, h, w, 1 if mode in ("1", "L", "LA", "I;16", "I", "F") else 3)


def _jpeg(f: BinaryIO, head: bytes, name) -> tuple[int, int, int]:
    """(height, width, channels): JPEG segments walked from the start to the frame header."""
    pos, buf, buf_start = 2, head, 0

    def need(k):  # make sure buf holds bytes [pos, pos+k) of the file
        nonlocal buf, buf_start, pos
        if pos + k <= len(buf):
            return True
        absolute = buf_start + pos
        f.seek(absolute)
        buf, buf_start, pos = f.read(max(k, 4096)), absolute, 0
        return len(buf) >= k

    while True:
        if not need(2):
            raise BadImage(name, "JPEG ends before its frame header")
        if buf[pos] != 0xFF:
            raise BadImage(name, "corrupt JPEG marker")
        marker = buf[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        if marker in (0xD9, 0xDA):
            raise BadImage(name, "JPEG has no frame header")
        if not need(4):
            raise BadImage(name, "truncated JPEG segment")
        length = struct.unpack(">H", buf[pos + 2 : pos + 4])[0]
        if length < 2:
            raise BadImage(name, "corrupt JPEG segment length")
        if marker in _SOF:
            if not need(10):
                raise BadImage(name, "truncated JPEG frame header")
            h, w = struct.unpack(">HH", buf[pos + 5 : pos + 9])
            comps = buf[pos + 9]
            if h == 0 or w == 0 or comps not in (1, 3, 4):
                raise BadImage(name, f"unsupported JPEG frame ({h}x{w}, {comps} components)")
            return h, w, 1 if comps == 1 else 3
        pos += 2 + length


# ------------------------------------------------------------------------------ checked reads
def _checked(f: BinaryIO, size: int, name) -> Header:
    hdr = header(f, name)
    check_pixels(hdr.height, hdr.width, name)
    limit = max_file_bytes(hdr.height, hdr.width)
    if size > limit:
        raise CnnedgeError(
            f"{name}: file is {size:,} bytes, more than a {hdr.height}×"
            f"{hdr.width} {hdr.kind.upper()} image can take (at most {limit:,}); "
            f"damaged or not an image, not read"
        )
    return hdr


def probe(path, name=None) -> Header:
    """The header of the image file ``path``, every bound checked; nothing is decoded."""
    name = path if name is None else name
    with open_regular(path, name) as f:
        return _checked(f, os.fstat(f.fileno()).st_size, name)


def read(path, name=None) -> tuple[Header, bytes]:
    """(header, the file's bytes) of a file that passed :func:`probe`'s checks; the read stops
    at the size that was checked, even if the file grows meanwhile."""
    name = path if name is None else name
    with open_regular(path, name) as f:
        size = os.fstat(f.fileno()).st_size
        hdr = _checked(f, size, name)
        f.seek(0)
        try:
            data = f.read(size + 1)  # one byte more tells a file that grew since the check
        except OSError as e:
            raise CnnedgeError(f"{name}: cannot read ({e.strerror or e})") from None
    if len(data) > size:
        raise CnnedgeError(f"{name}: file grew while read (being written?); not decoded")
    return hdr, data


def check_bytes(data: bytes, name="image") -> Header:
    """The checks of :func:`probe` on encoded bytes already in memory."""
    return _checked(io.BytesIO(data), len(data), name)
