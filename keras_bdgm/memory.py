"""Model memory: 1 bit per binary weight, 32 bits per real parameter, and a packed file.

`footprint(model)` counts, as `larq.models.summary` does, every weight of the model:
a weight whose larq quantizer has 1-bit precision (a BWN kernel) costs 1 bit, every other
weight 32 bits. `save_packed` writes a file of that size: binary kernels as their signs,
8 per byte, every other weight as float32 (non-float variables keep their own dtype).

Packed format, version 1 (all integers little-endian):

    offset 0   8 bytes   magic b"KBDGMPK1"
    offset 8   uint32    format version (1)
    offset 12  uint32    header length H
    offset 16  uint32    CRC-32 of the payload
    offset 20  uint64    payload length P
    offset 28  H bytes   zlib-compressed JSON: {"weights": [{"name", "shape", "kind",
                         "nbytes"}, ...]}, kind "sign" (packed bits, 1 = +1, row-major,
                         numpy.packbits order) or a numpy dtype name ("float32", ...)
    offset 28+H P bytes  the weights' data, in model.weights order

Loading assigns +1/-1 to binary latent weights (their signs, which is all the forward pass
uses), so outputs are bit-identical to the saved model's.

Example:

    fp = footprint(model)
    print(fp.binary_weights, fp.real_parameters, fp.bytes, fp.ratio)
    save_packed(model, "model.bdgm")
    load_packed(fresh_model_of_same_architecture, "model.bdgm")
"""

import dataclasses
import json
import os
import struct
import zlib

import numpy as np
import tensorflow as tf

MAGIC = b"KBDGMPK1"
FORMAT_VERSION = 1
_FIXED = struct.Struct("<8sIIIQ")
FIXED_HEADER_BYTES = _FIXED.size


def _unique_weights(model):
    """model.weights without duplicates and without metric state (not parameters)."""
    seen = {
        id(v)
        for m in model.submodules
        if isinstance(m, tf.keras.metrics.Metric)
        for v in m.variables
    }
    weights = []
    for w in model.weights:
        if id(w) not in seen:
            seen.add(id(w))
            weights.append(w)
    return weights


def is_binary(weight) -> bool:
    """A weight is binary when a 1-bit larq quantizer reads it (as `lq.models.summary`)."""
    return getattr(weight, "precision", 32) == 1


@dataclasses.dataclass(frozen=True)
class Footprint:
    """Parameter counts and memory of a model.

    Attributes:
      binary_weights: weights stored as 1 bit (signs of binary kernels).
      real_parameters: weights stored as 32 bits.
      bits: binary_weights + 32 * real_parameters.
      bytes: bits / 8, rounded up.
      float32_bytes: 4 bytes per weight, as if nothing were binary.
      ratio: float32_bytes / bytes, the memory saving.
    """

    binary_weights: int
    real_parameters: int
    bits: int
    bytes: int
    float32_bytes: int
    ratio: float

    @property
    def parameters(self) -> int:
        return self.binary_weights + self.real_parameters

    @property
    def binary_share(self) -> float:
        """Fraction of all parameters that are binary."""
        return self.binary_weights / self.parameters if self.parameters else 0.0

    def as_dict(self):
        return {
            **dataclasses.asdict(self),
            "parameters": self.parameters,
            "binary_share": self.binary_share,
        }


def _require_built(model):
    try:
        weights = _unique_weights(model)
    except ValueError:  # Keras: "Weights for model ... have not yet been created."
        weights = []
    if not weights:
        raise ValueError(
            f"Model {model.name!r} has no weights yet; build it first, e.g. by calling it "
            "on a batch or with model.build(input_shape)."
        )
    return weights


def footprint(model) -> Footprint:
    """Counts binary and real parameters of a built model, and their memory."""
    binary = real = 0
    for w in _require_built(model):
        n = int(np.prod(w.shape.as_list()))
        if is_binary(w):
            binary += n
        else:
            real += n
    bits = binary + 32 * real
    nbytes = (bits + 7) // 8
    float32_bytes = 4 * (binary + real)
    return Footprint(
        binary_weights=binary,
        real_parameters=real,
        bits=bits,
        bytes=nbytes,
        float32_bytes=float32_bytes,
        ratio=float32_bytes / nbytes if nbytes else 1.0,
    )


def _latent_value(weight):
    """The stored (latent) value of a weight, not its quantized view."""
    latent = getattr(weight, "latent_variable", weight)
    return np.asarray(latent.numpy())


def _encode(weight):
    value = _latent_value(weight)
    if is_binary(weight):
        return "sign", np.packbits((value >= 0).reshape(-1)).tobytes()
    if value.dtype.kind == "f":
        return "float32", value.astype("<f4").tobytes()
    return value.dtype.name, value.astype(value.dtype.newbyteorder("<")).tobytes()


def save_packed(model, path):
    """Writes `model`'s weights to `path` in the packed 1-bit format; returns bytes written."""
    entries, chunks = [], []
    for w in _require_built(model):
        kind, data = _encode(w)
        entries.append(
            {"name": w.name, "shape": w.shape.as_list(), "kind": kind, "nbytes": len(data)}
        )
        chunks.append(data)
    payload = b"".join(chunks)
    header = zlib.compress(json.dumps({"weights": entries}, separators=(",", ":")).encode(), 9)
    fixed = _FIXED.pack(MAGIC, FORMAT_VERSION, len(header), zlib.crc32(payload), len(payload))
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(fixed + header + payload)
    os.replace(tmp, path)
    return len(fixed) + len(header) + len(payload)


def _read(path):
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < FIXED_HEADER_BYTES or not blob.startswith(MAGIC):
        raise ValueError(
            f"{path} is not a keras_bdgm packed file (bad magic bytes); write one with "
            "keras_bdgm.memory.save_packed."
        )
    _, version, header_len, crc, payload_len = _FIXED.unpack_from(blob)
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{path} uses packed format version {version}; this keras_bdgm reads "
            f"version {FORMAT_VERSION}. Upgrade keras_bdgm or re-save the model."
        )
    expected = FIXED_HEADER_BYTES + header_len + payload_len
    if len(blob) != expected:
        raise ValueError(
            f"{path} is truncated or has trailing data: {len(blob)} bytes, the header "
            f"says {expected}. Re-copy or re-save the file."
        )
    try:
        header = json.loads(zlib.decompress(blob[FIXED_HEADER_BYTES:FIXED_HEADER_BYTES + header_len]))
    except (zlib.error, ValueError) as e:
        raise ValueError(f"{path} has a corrupt header ({e}); re-save the file.") from e
    payload = blob[FIXED_HEADER_BYTES + header_len:]
    if zlib.crc32(payload) != crc:
        raise ValueError(f"{path} is corrupt: its weights fail the CRC-32 check; re-save it.")
    return header["weights"], payload


def _decode(entry, data, weight):
    shape = entry["shape"]
    if entry["kind"] == "sign":
        n = int(np.prod(shape))
        bits = np.unpackbits(np.frombuffer(data, np.uint8), count=n)
        return np.where(bits.astype(bool), 1.0, -1.0).astype(weight.dtype.as_numpy_dtype).reshape(shape)
    dtype = np.dtype(entry["kind"]).newbyteorder("<")
    return np.frombuffer(data, dtype).astype(weight.dtype.as_numpy_dtype).reshape(shape)


def load_packed(model, path):
    """Loads a packed file into a built `model` of the same architecture.

    Raises:
      ValueError: if the file is not a packed file, is truncated or corrupt, or its
        weights do not match the model's (the message names the first mismatch).
    """
    entries, payload = _read(path)
    weights = _require_built(model)
    for i, (w, entry) in enumerate(zip(weights, entries)):
        kind = "sign" if is_binary(w) else "real"
        file_kind = "sign" if entry["kind"] == "sign" else "real"
        if w.shape.as_list() != entry["shape"] or kind != file_kind:
            raise ValueError(
                f"{path} does not match model {model.name!r}: weight #{i} {w.name!r} is "
                f"{kind} with shape {w.shape.as_list()}, the file's {entry['name']!r} is "
                f"{file_kind} with shape {entry['shape']}. Build the model with the same "
                "architecture, precision and preset as the saved one."
            )
    if len(weights) != len(entries):
        raise ValueError(
            f"{path} holds {len(entries)} weights, model {model.name!r} has {len(weights)}"
            + (f"; first missing from the file: {weights[len(entries)].name!r}." if len(weights) > len(entries) else ".")
            + " Build the model with the same architecture as the saved one."
        )
    offset = 0
    values = []
    for w, entry in zip(weights, entries):
        data = payload[offset:offset + entry["nbytes"]]
        offset += entry["nbytes"]
        values.append(_decode(entry, data, w))
    for w, value in zip(weights, values):
        getattr(w, "latent_variable", w).assign(value)
