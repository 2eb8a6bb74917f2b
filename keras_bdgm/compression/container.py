"""The compressed-file container: a self-describing header, the ANS words and a CRC-32.

Format version 1 (all integers little-endian):

    offset 0     8 bytes   magic b"KBDGMIC\\x00"
    offset 8     uint32    format version (1)
    offset 12    uint32    header length H
    offset 16    H bytes   UTF-8 JSON header (below)
    offset 16+H  4*W bytes the payload: W uint32 words of ANS data
    last 4 bytes uint32    CRC-32 of every byte before it

The JSON header:

    {"codec": "bits-back-resnet-vae",       which codec wrote the payload
     "image_shape": [H, W, C], "count": N,  the images: uint8 [N, H, W, C]
     "model": {"class": ..., "fingerprint": ...},   keras_bdgm.compression.fingerprint
     "params": {...},                        the codec's parameters (see its docs)
     "payload_words": W}

`unpack` checks, in order, and raises a ValueError that names the problem: the magic
bytes ("not a keras_bdgm compressed file"), the version ("format version v"), the length
against the header ("truncated" or "trailing data"), the CRC ("corrupt"). `write_atomic`
writes a file through a temporary file and `os.replace`, so a reader never sees half a
file.

Example:

    data = pack(header, words)
    header, words = unpack(data)
    write_atomic("images.kbc", data)
"""

import json
import os
import struct
import tempfile
import zlib

import numpy as np

MAGIC = b"KBDGMIC\x00"
FORMAT_VERSION = 1
_FIXED = struct.Struct("<8sII")
_CRC = struct.Struct("<I")
FIXED_BYTES = _FIXED.size
_REQUIRED = ("codec", "image_shape", "count", "model", "params", "payload_words")


def pack(header, words):
    """The file bytes for a header dict (without payload_words) and uint32 `words`."""
    words = np.ascontiguousarray(words, dtype="<u4")
    header = dict(header, payload_words=int(words.size))
    blob = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    body = _FIXED.pack(MAGIC, FORMAT_VERSION, len(blob)) + blob + words.tobytes()
    return body + _CRC.pack(zlib.crc32(body))


def _expected_length(data):
    """The file length the header declares, or None if the header cannot be read."""
    (header_len,) = struct.unpack_from("<I", data, 12)
    try:
        header = json.loads(data[FIXED_BYTES:FIXED_BYTES + header_len].decode())
        return FIXED_BYTES + header_len + 4 * int(header["payload_words"]) + _CRC.size, header
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None, None


def unpack(data, name="data"):
    """(header dict, uint32 words) from file bytes; ValueError naming what is wrong."""
    data = bytes(data)
    if not data or data[: len(MAGIC)] != MAGIC[: len(data)]:
        raise ValueError(f"{name} is not a keras_bdgm compressed file (bad magic bytes).")
    if len(data) < FIXED_BYTES:
        raise ValueError(f"{name} is truncated: {len(data)} bytes, shorter than the {FIXED_BYTES}-byte fixed header.")
    _, version, header_len = _FIXED.unpack_from(data)
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{name} uses compressed-file format version {version}; this keras_bdgm reads version "
            f"{FORMAT_VERSION}. Decode it with the keras_bdgm version that wrote it."
        )
    if len(data) < FIXED_BYTES + header_len + _CRC.size:
        raise ValueError(
            f"{name} is truncated: {len(data)} bytes, shorter than its {FIXED_BYTES + header_len}-byte header."
        )
    expected, header = _expected_length(data)
    if expected is not None and len(data) < expected:
        raise ValueError(f"{name} is truncated: {len(data)} bytes, its header says {expected}.")
    if expected is not None and len(data) > expected:
        raise ValueError(f"{name} has {len(data) - expected} bytes of trailing data after its {expected}-byte file.")
    (crc,) = _CRC.unpack_from(data, len(data) - _CRC.size)
    if expected is None or crc != zlib.crc32(data[: -_CRC.size]):
        raise ValueError(f"{name} is corrupt: it fails its CRC-32 check.")
    missing = [key for key in _REQUIRED if key not in header]
    if missing:
        raise ValueError(f"{name} is corrupt: its header lacks {missing}.")
    payload = data[FIXED_BYTES + header_len: -_CRC.size]
    return header, np.frombuffer(payload, dtype="<u4").astype(np.uint32)


def write_atomic(path, data):
    """Writes bytes to `path` atomically (temporary file in the same folder + os.replace)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return len(data)
