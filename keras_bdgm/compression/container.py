"""The compressed-file container: a compact self-describing header, the payload, a CRC-32.

Format version 2 (written since keras_bdgm 0.3.0; integers little-endian, "varint" an
unsigned LEB128 integer of 1 or more bytes):

    3 bytes    magic b"KBC"
    1 byte     format version (2)
    1 byte     codec id (`CODEC_IDS`: 0 = the raw pixels, stored)
    2+2+1      image height, width (uint16), channels (uint8)
    varint     count N of images
    8 bytes    the model's fingerprint, first 8 bytes (absent for stored pixels)
    varint P   then P bytes: the codec's parameters, compact JSON (P = 0: none)
    varint L   then L bytes, the payload: N*H*W*C pixels (stored), or 32-bit ANS words
    4 bytes    CRC-32 of every byte before it

A file of stored pixels costs N*H*W*C bytes plus 17 to 24: the codec never writes more
than that (`keras_bdgm.compression.codec`), whatever the images. The header of a model
codec is 24 bytes plus its parameters (a few dozen bytes for a single-image file).

`unpack` also reads format version 1 (keras_bdgm 0.1 and 0.2: magic b"KBDGMIC\\x00",
uint32 version and header length, a JSON header, the words, a CRC-32), so older files
still decode. It returns (header, payload) with the header as a dict:

    {"codec": "bits-back-resnet-vae",       which codec wrote the payload
     "image_shape": [H, W, C], "count": N,  the images: uint8 [N, H, W, C]
     "model": {"fingerprint": ...},         keras_bdgm.compression.fingerprint (a prefix in v2)
     "params": {...},                        the codec's parameters (see its docs)
     "format": 2}

and the payload as uint32 words, or uint8 pixels [N, H, W, C] for stored images. It checks,
in order, and raises a ValueError that names the problem: the magic bytes ("not a
keras_bdgm compressed file"), the version ("format version v"), the length against the
header ("truncated" or "trailing data"), the CRC ("corrupt"). `write_atomic` writes a file
through a temporary file and `os.replace`, so a reader never sees half a file.

Example:

    data = pack({"codec": "stored", "image_shape": [28, 28, 1], "count": 1, "params": {}}, pixels)
    header, payload = unpack(data)
    write_atomic("images.kbc", data)
"""

import json
import os
import struct
import tempfile
import zlib

import numpy as np

MAGIC = b"KBC"
FORMAT_VERSION = 2
STORED = "stored"
# Codec name <-> the id byte of format 2. Ids are never reused.
CODEC_IDS = {STORED: 0, "bits-back-resnet-vae": 1, "autoregressive-mixture": 2}
_CODEC_NAMES = {v: k for k, v in CODEC_IDS.items()}
FINGERPRINT_BYTES = 8
_SHAPE = struct.Struct("<HHB")
_CRC = struct.Struct("<I")

# Format version 1 (read only).
MAGIC_V1 = b"KBDGMIC\x00"
_FIXED_V1 = struct.Struct("<8sII")
FIXED_BYTES_V1 = _FIXED_V1.size
_REQUIRED_V1 = ("codec", "image_shape", "count", "model", "params", "payload_words")


def _varint(value):
    out = bytearray()
    value = int(value)
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_varint(data, offset, name):
    value, shift = 0, 0
    while True:
        if offset >= len(data):
            raise ValueError(f"{name} is truncated: its header ends early.")
        byte = data[offset]
        value |= (byte & 0x7F) << shift
        offset += 1
        if not byte & 0x80:
            return value, offset
        shift += 7
        if shift > 63:
            raise ValueError(f"{name} is corrupt: a length in its header is too long.")


def fingerprint_prefix(fingerprint):
    """The first FINGERPRINT_BYTES of a hex fingerprint, as stored in format 2 (hex)."""
    return str(fingerprint)[: 2 * FINGERPRINT_BYTES]


def pack(header, payload):
    """The file bytes (format 2) for a header dict and its payload.

    Args:
      header: {"codec", "image_shape", "count", "params"} and, for a model codec,
        "model": {"fingerprint": hex}.
      payload: uint32 words (model codecs) or uint8 pixels (codec "stored").
    """
    codec = header["codec"]
    if codec not in CODEC_IDS:
        raise ValueError(f"Unknown codec {codec!r}; known: {sorted(CODEC_IDS)}.")
    h, w, c = (int(d) for d in header["image_shape"])
    parts = [MAGIC, bytes([FORMAT_VERSION, CODEC_IDS[codec]]), _SHAPE.pack(h, w, c), _varint(header["count"])]
    if codec == STORED:
        payload = np.ascontiguousarray(payload, dtype=np.uint8).tobytes()
    else:
        parts.append(bytes.fromhex(fingerprint_prefix(header["model"]["fingerprint"])))
        payload = np.ascontiguousarray(payload, dtype="<u4").tobytes()
    params = header.get("params") or {}
    blob = json.dumps(params, sort_keys=True, separators=(",", ":")).encode() if params else b""
    parts += [_varint(len(blob)), blob, _varint(len(payload)), payload]
    body = b"".join(parts)
    return body + _CRC.pack(zlib.crc32(body))


def _expected_length(data):
    """The file length a format-1 header declares, or None if the header cannot be read."""
    (header_len,) = struct.unpack_from("<I", data, 12)
    try:
        header = json.loads(data[FIXED_BYTES_V1:FIXED_BYTES_V1 + header_len].decode())
        return FIXED_BYTES_V1 + header_len + 4 * int(header["payload_words"]) + _CRC.size, header
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None, None


def unpack(data, name="data"):
    """(header dict, payload) from file bytes (format 2 or 1); ValueError naming what is wrong."""
    data = bytes(data)
    if data[:1] == MAGIC_V1[:1] and MAGIC_V1.startswith(data[:8]) and data[:3] != MAGIC:
        return _unpack_v1(data, name)
    if not data or data[: len(MAGIC)] != MAGIC[: len(data)]:
        raise ValueError(f"{name} is not a keras_bdgm compressed file (bad magic bytes).")
    if len(data) < len(MAGIC) + 2 + _SHAPE.size + 1 + _CRC.size:
        raise ValueError(f"{name} is truncated: {len(data)} bytes, shorter than the smallest header.")
    version, codec_id = data[3], data[4]
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{name} uses compressed-file format version {version}; this keras_bdgm reads versions 1 and "
            f"{FORMAT_VERSION}. Decode it with the keras_bdgm version that wrote it."
        )
    if codec_id not in _CODEC_NAMES:
        raise ValueError(f"{name} was written by an unknown codec (id {codec_id}); upgrade keras_bdgm.")
    codec = _CODEC_NAMES[codec_id]
    shape = list(_SHAPE.unpack_from(data, 5))
    count, offset = _read_varint(data, 5 + _SHAPE.size, name)
    header = {"codec": codec, "image_shape": shape, "count": count, "model": {}, "format": FORMAT_VERSION}
    if codec != STORED:
        header["model"] = {"fingerprint": data[offset:offset + FINGERPRINT_BYTES].hex()}
        offset += FINGERPRINT_BYTES
    params_size, offset = _read_varint(data, offset, name)
    params_at, offset = offset, offset + params_size
    payload_size, offset = _read_varint(data, offset, name)
    expected = offset + payload_size + _CRC.size
    if len(data) < expected:
        raise ValueError(f"{name} is truncated: {len(data)} bytes, its header says {expected}.")
    if len(data) > expected:
        raise ValueError(f"{name} has {len(data) - expected} bytes of trailing data after its {expected}-byte file.")
    (crc,) = _CRC.unpack_from(data, len(data) - _CRC.size)
    if crc != zlib.crc32(data[: -_CRC.size]):
        raise ValueError(f"{name} is corrupt: it fails its CRC-32 check.")
    try:
        header["params"] = json.loads(data[params_at:params_at + params_size].decode()) if params_size else {}
    except (ValueError, UnicodeDecodeError):
        raise ValueError(f"{name} is corrupt: its parameters are not readable.") from None
    payload = data[offset:offset + payload_size]
    if codec == STORED:
        pixels = count * int(np.prod(shape))
        if len(payload) != pixels:
            raise ValueError(f"{name} is corrupt: {len(payload)} bytes of pixels, its header says {pixels}.")
        return header, np.frombuffer(payload, np.uint8).reshape([count, *shape])
    if len(payload) % 4:
        raise ValueError(f"{name} is corrupt: its payload is not whole 32-bit words.")
    return header, np.frombuffer(payload, dtype="<u4").astype(np.uint32)


def _unpack_v1(data, name):
    """(header dict, uint32 words) of a format-1 file (keras_bdgm 0.1, 0.2)."""
    if len(data) < FIXED_BYTES_V1:
        raise ValueError(f"{name} is truncated: {len(data)} bytes, shorter than the {FIXED_BYTES_V1}-byte fixed header.")
    _, version, header_len = _FIXED_V1.unpack_from(data)
    if version != 1:
        raise ValueError(
            f"{name} uses compressed-file format version {version}; this keras_bdgm reads versions 1 and "
            f"{FORMAT_VERSION}. Decode it with the keras_bdgm version that wrote it."
        )
    if len(data) < FIXED_BYTES_V1 + header_len + _CRC.size:
        raise ValueError(
            f"{name} is truncated: {len(data)} bytes, shorter than its {FIXED_BYTES_V1 + header_len}-byte header."
        )
    expected, header = _expected_length(data)
    if expected is not None and len(data) < expected:
        raise ValueError(f"{name} is truncated: {len(data)} bytes, its header says {expected}.")
    if expected is not None and len(data) > expected:
        raise ValueError(f"{name} has {len(data) - expected} bytes of trailing data after its {expected}-byte file.")
    (crc,) = _CRC.unpack_from(data, len(data) - _CRC.size)
    if expected is None or crc != zlib.crc32(data[: -_CRC.size]):
        raise ValueError(f"{name} is corrupt: it fails its CRC-32 check.")
    missing = [key for key in _REQUIRED_V1 if key not in header]
    if missing:
        raise ValueError(f"{name} is corrupt: its header lacks {missing}.")
    payload = data[FIXED_BYTES_V1 + header_len: -_CRC.size]
    header["format"] = 1
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
