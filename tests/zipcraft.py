"""Hand-made ZIPs for the archive-safety tests: raw entries, lying headers and real bombs.

:func:`build_zip` writes entries whose compressed bytes are given as they are,
so a test controls every header field (method, CRC, sizes) independently of the
data. The bombs are real: their data decompresses to what their headers say
(``deflate_zeros`` to ``mib`` MiB of zeros, ``bzip2_zeros`` to 1 GiB with any
multi-stream bzip2 reader, ``lzma_zeros`` to ``mib`` MiB), and they are made
without ever holding the output in memory:

* deflate: zlib's output after a full flush does not depend on what came
  before, so the compressed form of one MiB of zeros is repeated;
* bzip2: one small stream per chunk of zeros, concatenated (``bzip2 -d`` and
  :func:`bz2.decompress` read them all);
* LZMA: compressed in chunks (about 1.7 s per 256 MiB).

CRCs of long runs of zeros are combined (zlib's ``crc32_combine``) instead of computed byte by byte.
"""

from __future__ import annotations

import bz2
import lzma
import struct
import zlib
from dataclasses import dataclass
from functools import cache

STORED, DEFLATED, BZIP2, LZMA = 0, 8, 12, 14
MIB = 1 << 20
_ZIP64_LIMIT = 0xFFFFFFFF


@dataclass(frozen=True)
class RawEntry:
    """One entry: ``data`` is written as the entry's compressed bytes, the rest goes into the headers."""

    name: str
    data: bytes
    method: int
    crc: int
    size: int  # the uncompressed size the headers declare
    flags: int = 0


def stored(name: str, content: bytes) -> RawEntry:
    return RawEntry(name, content, STORED, zlib.crc32(content), len(content))


def deflated(name: str, content: bytes, level: int = 6) -> RawEntry:
    packer = zlib.compressobj(level, zlib.DEFLATED, -15)
    return RawEntry(name, packer.compress(content) + packer.flush(), DEFLATED, zlib.crc32(content), len(content))


def bzip2_entry(name: str, content: bytes) -> RawEntry:
    return RawEntry(name, bz2.compress(content), BZIP2, zlib.crc32(content), len(content))


def lzma_entry(name: str, content: bytes) -> RawEntry:
    packer = _lzma_packer()
    return RawEntry(name, _lzma_header() + packer.compress(content) + packer.flush(), LZMA, zlib.crc32(content),
                    len(content), flags=0x02)


def build_zip(entries: list[RawEntry]) -> bytes:
    """The bytes of a ZIP holding ``entries`` in order (ZIP64 fields where a size needs them)."""
    body = bytearray()
    directory = bytearray()
    for entry in entries:
        offset = len(body)
        name = entry.name.encode()
        big = entry.size >= _ZIP64_LIMIT or len(entry.data) >= _ZIP64_LIMIT
        extra = struct.pack("<HHQQ", 1, 16, entry.size, len(entry.data)) if big else b""
        size32 = _ZIP64_LIMIT if big else entry.size
        csize32 = _ZIP64_LIMIT if big else len(entry.data)
        version = 45 if big else 20
        body += struct.pack("<4s5H3L2H", b"PK\x03\x04", version, entry.flags | 0x800, entry.method, 0, 0x21,
                            entry.crc, csize32, size32, len(name), len(extra)) + name + extra + entry.data
        directory += struct.pack("<4s6H3L5HLL", b"PK\x01\x02", 0x031E, version, entry.flags | 0x800, entry.method,
                                 0, 0x21, entry.crc, csize32, size32, len(name), len(extra), 0, 0, 0,
                                 0o100644 << 16, offset) + name + extra
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(directory), len(body), 0)
    return bytes(body + directory + end)


def central_offset(data: bytes, index: int) -> int:
    """Where central directory record ``index`` starts in ``data`` (an archive without ZIP64 end records)."""
    end = data.rindex(b"PK\x05\x06")
    pos = struct.unpack_from("<L", data, end + 16)[0]
    for _ in range(index):
        name_len, extra_len, comment_len = struct.unpack_from("<3H", data, pos + 28)
        pos += 46 + name_len + extra_len + comment_len
    return pos


def patch_central(data: bytes, index: int, field: int, fmt: str, value: int) -> bytes:
    """``data`` with field ``field`` (byte offset in the record) of central record ``index`` set to ``value``."""
    patched = bytearray(data)
    struct.pack_into(fmt, patched, central_offset(data, index) + field, value)
    return bytes(patched)


# -- bombs ---------------------------------------------------------------------------
def deflate_zeros(mib: int) -> bytes:
    """A raw deflate stream of ``mib`` MiB of zeros (about 1 KiB per MiB)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = packer.compress(bytes(MIB)) + packer.flush(zlib.Z_FULL_FLUSH)
    repeat = packer.compress(bytes(MIB)) + packer.flush(zlib.Z_FULL_FLUSH)
    return first + repeat * (mib - 1) + packer.flush()


def bzip2_zeros(total: int = 1 << 30, chunk: int = 8 * MIB) -> bytes:
    """``total`` bytes of zeros compressed in ``chunk``-sized bzip2 streams, concatenated (about 6 KiB per GiB)."""
    assert total % chunk == 0
    return bz2.compress(bytes(chunk), 9) * (total // chunk)


def lzma_zeros(mib: int) -> bytes:
    """ZIP method 14 data (version, properties, raw LZMA1 stream with an end marker) for ``mib`` MiB of zeros."""
    packer = _lzma_packer()
    zeros = bytes(16 * MIB)
    parts = [_lzma_header()]
    for start in range(0, mib, 16):
        parts.append(packer.compress(zeros[: min(16, mib - start) * MIB]))
    parts.append(packer.flush())
    return b"".join(parts)


def bomb_entry(name: str, method: int, data: bytes, size: int) -> RawEntry:
    """An entry of ``size`` bytes of zeros whose compressed ``data`` is given (CRC computed without inflating)."""
    return RawEntry(name, data, method, crc32_zeros(size), size, flags=0x02 if method == LZMA else 0)


_LZMA_FILTER = {"id": lzma.FILTER_LZMA1, "preset": 0, "mode": lzma.MODE_FAST, "nice_len": 273,
                "dict_size": 1 << 20}


def _lzma_packer() -> lzma.LZMACompressor:
    return lzma.LZMACompressor(lzma.FORMAT_RAW, filters=[_LZMA_FILTER])


def _lzma_header() -> bytes:
    props = lzma._encode_filter_properties(_LZMA_FILTER)  # what zipfile itself writes (APPNOTE 5.8.8)
    return struct.pack("<BBH", 9, 4, len(props)) + props


# -- CRC-32 of long runs of zeros ------------------------------------------------------
def _times(matrix: list[int], vector: int) -> int:
    total, row = 0, 0
    while vector:
        if vector & 1:
            total ^= matrix[row]
        vector >>= 1
        row += 1
    return total


def _square(matrix: list[int]) -> list[int]:
    return [_times(matrix, matrix[n]) for n in range(32)]


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """CRC-32 of A+B from CRC-32(A), CRC-32(B) and len(B) (zlib's ``crc32_combine``)."""
    if len2 <= 0:
        return crc1
    odd = [0xEDB88320] + [1 << n for n in range(31)]  # the operator for one zero bit
    even = _square(odd)  # two bits
    odd = _square(even)  # four bits
    while True:
        even = _square(odd)
        if len2 & 1:
            crc1 = _times(even, crc1)
        len2 >>= 1
        if not len2:
            break
        odd = _square(even)
        if len2 & 1:
            crc1 = _times(odd, crc1)
        len2 >>= 1
        if not len2:
            break
    return crc1 ^ crc2


@cache
def crc32_zeros(length: int) -> int:
    """CRC-32 of ``length`` zero bytes, in O(log length) steps."""
    if length <= MIB:
        return zlib.crc32(bytes(length))
    half = length // 2
    return crc32_combine(crc32_zeros(half), crc32_zeros(length - half), length - half)
