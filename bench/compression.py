"""Lossless compression: keras_bdgm's model codecs beside classical codecs, in one run.

    python bench/compression.py --model=runs/pixelcnn_w1a1 --model=pretrained:resnet_vae/w1a1 \\
        --num_images=10000 --per_image_images=1000 [--input=fashion_mnist:test] \\
        [--batch_size=N] [--json=bench/compression_output.json]

`--model` (repeated, or comma-separated) names a run folder of examples/train.py (its
model.keras) or a shipped model, `pretrained:<model>/<precision>[/<dataset>]`. Each is coded
with `keras_bdgm.compression.codec_for(model)`: a PixelCNN directly with ANS
(`AutoregressiveCodec`), a ResNet VAE with bits-back ANS (`BitsBackCodec`), at the codec's
own batch size unless --batch_size (and --num_buckets, bits-back only) is given.

Whole set (the first --num_images of --input; default: the test split of the first
model's dataset), one file for all images:

* each model codec: bits/dim of the whole file, net (the images' own code) and with the
  initial bits of bits-back coding; the model's mean single-sample bound on the same
  images (`tools.elbo_bits_per_dim`: -ELBO for the VAE, the exact -log2 p(x) for the
  PixelCNN) and net / bound; the packed model (.bdgm: the run folder's model.bdgm, the
  shipped file, else written to a temporary file) as bytes and as bits/dim spread over the
  images coded, (packed bytes * 8) / (images * dims), and file + model bits/dim; encode and
  decode images/s (after a warm-up call that compiles the tf.functions); an exact-round-
  trip check; and where the encode time goes (cProfile of --profile_images images:
  `_PARTS`);
* gzip -9, bz2 -9, lzma (preset 9 | EXTREME) on the raw uint8 array, in Python;
* `brotli -q 11 -w 24`, `zstd --ultra -22`, `xz -9e` on the raw array as a file (each
  skipped with a note where the tool is not on PATH);
* JPEG XL lossless (`cjxl`/`djxl`, Debian's libjxl-tools; skipped with a note where
  missing) of the set as one tall image (the images stacked vertically, N*H x W, grey
  for C = 1, RGB for C = 3), at `cjxl -d 0 -e 9 -I 100 -g 3` and at the default effort
  (`cjxl -d 0`), decoded with djxl to PNG and checked.

Per image (the first --per_image_images images, one file each): each model codec
(`codec.compress_each` / `codec.decompress_each`), JPEG XL (`cjxl -d 0 -e 9`, one PNG ->
one .jxl), WebP lossless (method 6) and PNG (optimize=True) via Pillow. "file + model"
spreads the packed model over these images; it is left blank for the classical codecs.

Times are wall clock on this machine; the command-line tools' include starting the
process (once per file per image) and reading/writing their files. Every row is checked
for an exact round trip. Prints the command, a markdown table (whole-set rows, then
per-image rows) and the encode-time breakdown, and writes every row with the machine
and tool versions as JSON (--json). A full run (10,000 images; -e 9 alone takes minutes)
wants a quiet machine; try it with --num_images=50 --per_image_images=20 first. The
command-line codecs on Debian: `apt-get install -y libjxl-tools brotli zstd xz-utils`.
"""

import argparse
import bz2
import cProfile
import datetime
import gzip
import io
import json
import lzma
import os
import platform
import pstats
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

import keras_bdgm  # noqa: F401  (Keras 2 before TensorFlow)
import numpy as np
import tensorflow as tf
from PIL import Image

from keras_bdgm import compression, memory, pretrained

from keras_bdgm.runs import run_dir
from keras_bdgm.compression import container, tools
from keras_bdgm.compression.autoregressive import EACH_BATCH_SIZE, AutoregressiveCodec

PRETRAINED_PREFIX = "pretrained:"
WHOLE_SET, PER_IMAGE = "whole set", "per image"


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _row(name, scope, total_bytes, images, enc_s, dec_s, **extra):
    return {"codec": name, "scope": scope, "images": len(images), "bytes": int(total_bytes),
            "bits_per_dim": 8.0 * total_bytes / images.size,
            "encode_images_per_s": len(images) / enc_s if enc_s > 0 else None,
            "decode_images_per_s": len(images) / dec_s if dec_s > 0 else None, **extra}


def _mode(images):
    return {1: "L", 3: "RGB"}.get(images.shape[-1])


# ---------------------------------------------------------------------------- classical, in Python


def per_image_pillow(name, images, save_kwargs):
    """One file per image via Pillow; total bytes, speeds, and an exact-round-trip check."""
    mode = _mode(images)

    def encode():
        blobs = []
        for image in images:
            buf = io.BytesIO()
            Image.fromarray(image[..., 0] if mode == "L" else image, mode=mode).save(buf, **save_kwargs)
            blobs.append(buf.getvalue())
        return blobs

    blobs, enc_s = _timed(encode)
    # WebP stores grey images as RGB; decoding converts back to the images' own mode.
    decoded, dec_s = _timed(lambda: [np.asarray(Image.open(io.BytesIO(b)).convert(mode)) for b in blobs])
    exact = np.array_equal(np.stack(decoded).reshape(images.shape), images)
    return _row(name, PER_IMAGE, sum(map(len, blobs)), images, enc_s, dec_s, exact=exact)


def whole_array_python(name, images, compress, decompress):
    raw = np.ascontiguousarray(images).tobytes()
    blob, enc_s = _timed(lambda: compress(raw))
    back, dec_s = _timed(lambda: decompress(blob))
    return _row(name, WHOLE_SET, len(blob), images, enc_s, dec_s, exact=back == raw)


def python_codecs(images):
    return [
        whole_array_python("gzip -9", images, lambda b: gzip.compress(b, 9), gzip.decompress),
        whole_array_python("bz2 -9", images, lambda b: bz2.compress(b, 9), bz2.decompress),
        whole_array_python("lzma 9|EXTREME", images,
                           lambda b: lzma.compress(b, preset=9 | lzma.PRESET_EXTREME), lzma.decompress),
    ]


# ---------------------------------------------------------------------------- command-line tools


def _run(cmd, stdout_path=None):
    """Runs cmd (raising with its stderr on failure); stdout to `stdout_path` if given."""
    if stdout_path is None:
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    else:
        with open(stdout_path, "wb") as out:
            proc = subprocess.run(cmd, stdout=out, stderr=subprocess.PIPE, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed ({proc.returncode}): {proc.stderr.decode(errors='replace')}")


def tool_version(tool):
    for flag in ("--version", "-V"):
        try:
            proc = subprocess.run([tool, flag], capture_output=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        text = (proc.stdout + proc.stderr).decode(errors="replace").strip()
        if proc.returncode == 0 and text:
            return text.splitlines()[0]
    return None


def _missing(tools_needed, what, notes):
    missing = [t for t in tools_needed if shutil.which(t) is None]
    if missing:
        note = f"skipped {what}: {', '.join(missing)} not on PATH"
        print(note)
        notes.append(note)
    return bool(missing)


# (name, compress command(in, out), decompress command(in, out); None = to stdout)
_CLI_CODECS = [
    ("brotli -q 11 -w 24", "brotli",
     lambda i, o: (["brotli", "-q", "11", "-w", "24", "-f", "-o", o, i], None),
     lambda i, o: (["brotli", "-d", "-f", "-o", o, i], None)),
    ("zstd --ultra -22", "zstd",
     lambda i, o: (["zstd", "--ultra", "-22", "-q", "-f", i, "-o", o], None),
     lambda i, o: (["zstd", "-d", "-q", "-f", i, "-o", o], None)),
    ("xz -9e", "xz",
     lambda i, o: (["xz", "-9e", "-k", "-c", i], o),
     lambda i, o: (["xz", "-d", "-k", "-c", i], o)),
]


def cli_codecs(images, tmp, notes):
    """brotli, zstd and xz on the raw uint8 array as a file, whole set."""
    raw = np.ascontiguousarray(images).tobytes()
    raw_path = os.path.join(tmp, "images.raw")
    with open(raw_path, "wb") as f:
        f.write(raw)
    rows = []
    for name, tool, encode, decode in _CLI_CODECS:
        if _missing([tool], name, notes):
            continue
        packed, back = os.path.join(tmp, f"images.{tool}"), os.path.join(tmp, f"back.{tool}.raw")
        _, enc_s = _timed(lambda: _run(*encode(raw_path, packed)))
        _, dec_s = _timed(lambda: _run(*decode(packed, back)))
        with open(back, "rb") as f:
            exact = f.read() == raw
        rows.append(_row(name, WHOLE_SET, os.path.getsize(packed), images, enc_s, dec_s, exact=exact,
                         tool_version=tool_version(tool)))
        os.remove(back)
    return rows


def _save_png(path, array, mode):
    Image.fromarray(array[..., 0] if mode == "L" else array, mode=mode).save(path, format="PNG")


def _read_png(path, mode):
    return np.asarray(Image.open(path).convert(mode))


JXL_E9 = ["-d", "0", "-e", "9", "-I", "100", "-g", "3"]
JXL_DEFAULT = ["-d", "0"]
JXL_E9_PER_IMAGE = ["-d", "0", "-e", "9"]


def jxl_tall(images, tmp, notes):
    """JPEG XL of the set as one tall image (N*H x W), at -e 9 and at the default effort."""
    mode = _mode(images)
    if mode is None:
        notes.append(f"skipped JPEG XL: {images.shape[-1]} channels (needs 1 or 3)")
        print(notes[-1])
        return []
    if _missing(["cjxl", "djxl"], "JPEG XL", notes):
        return []
    n, h, w, c = images.shape
    tall = images.reshape(n * h, w, c)
    png = os.path.join(tmp, "tall.png")
    _save_png(png, tall, mode)
    rows = []
    for label, flags in (("cjxl " + " ".join(JXL_E9), JXL_E9), ("cjxl " + " ".join(JXL_DEFAULT), JXL_DEFAULT)):
        jxl, back = os.path.join(tmp, "tall.jxl"), os.path.join(tmp, "tall_back.png")
        print(f"JPEG XL, one {n * h}x{w} image: {label} ...", flush=True)
        _, enc_s = _timed(lambda: _run(["cjxl", png, jxl, *flags, "--quiet"]))
        _, dec_s = _timed(lambda: _run(["djxl", jxl, back, "--quiet"]))
        exact = np.array_equal(_read_png(back, mode).reshape(tall.shape), tall)
        rows.append(_row(f"JPEG XL lossless ({label}), one {n * h}x{w} image", WHOLE_SET, os.path.getsize(jxl),
                         images, enc_s, dec_s, exact=exact, tool_version=tool_version("cjxl"),
                         note="times include one cjxl/djxl process each and djxl writing a PNG"))
        os.remove(jxl)
        os.remove(back)
    return rows


def jxl_per_image(images, tmp, notes):
    """JPEG XL per image: one PNG -> one .jxl (cjxl -d 0 -e 9) -> djxl -> PNG, each."""
    mode = _mode(images)
    if mode is None or _missing(["cjxl", "djxl"], "JPEG XL per image", notes):
        return []
    folder = os.path.join(tmp, "jxl_each")
    os.makedirs(folder)
    pngs = [os.path.join(folder, f"{i:06d}.png") for i in range(len(images))]
    for path, image in zip(pngs, images):
        _save_png(path, image, mode)
    jxls = [p[:-4] + ".jxl" for p in pngs]
    backs = [p[:-4] + "_back.png" for p in pngs]
    label = "cjxl " + " ".join(JXL_E9_PER_IMAGE)
    print(f"JPEG XL per image ({len(images)} files): {label} ...", flush=True)
    _, enc_s = _timed(lambda: [_run(["cjxl", p, j, *JXL_E9_PER_IMAGE, "--quiet"]) for p, j in zip(pngs, jxls)])
    _, dec_s = _timed(lambda: [_run(["djxl", j, b, "--quiet"]) for j, b in zip(jxls, backs)])
    decoded = np.stack([_read_png(b, mode) for b in backs]).reshape(images.shape)
    row = _row(f"JPEG XL lossless ({label})", PER_IMAGE, sum(os.path.getsize(j) for j in jxls), images,
               enc_s, dec_s, exact=np.array_equal(decoded, images), tool_version=tool_version("cjxl"),
               note="times include one cjxl/djxl process per file")
    shutil.rmtree(folder, ignore_errors=True)
    return [row]


# ---------------------------------------------------------------------------- model codecs


def load_model(spec):
    """(model, label, packed .bdgm path or None, dataset or None) for a --model entry."""
    if spec.startswith(PRETRAINED_PREFIX):
        name = spec[len(PRETRAINED_PREFIX):]
        model = pretrained.load(name)
        stem = "_".join(pretrained.parse_name(name))
        return model, spec, str(pretrained.DIRECTORY / f"{stem}.bdgm"), model.record.get("dataset")
    model = tools.load_model(model_dir=spec)
    path = os.path.join(spec, "model.bdgm")
    return model, spec, path if os.path.exists(path) else None, _run_dataset(spec)


def _run_dataset(model_dir):
    settings = {}
    for name in (run_dir.CONFIG_FILE, run_dir.REPORT_FILE):
        path = os.path.join(model_dir, name)
        if os.path.exists(path):
            with open(path) as f:
                settings.update(json.load(f))
    return settings.get("dataset")


def packed_bytes(model, path):
    if path is not None:
        return os.path.getsize(path)
    with tempfile.TemporaryDirectory() as tmp:
        return memory.save_packed(model, os.path.join(tmp, "model.bdgm"))


# Parts of the encoder: (file suffix, function) whose cProfile cumulative times do not
# overlap (none of them calls another), except as `_INSIDE` says.
_PARTS = {
    # every tf.function call: the ResNet VAE's per-layer steps (bits_back.py) and the
    # PixelCNN raster decoder's row and pixel steps (models/pixelcnn_raster.py)
    "networks (TensorFlow tf.functions)": [("polymorphic_function.py", "__call__")],
    # the raster decoder's driver, less its tf.function calls (`_INSIDE`): eager
    # tf.constant/tf.stack between the steps and .numpy() of each pixel's parameters
    "raster decoder between steps (eager TF)": [("models/pixelcnn_raster.py", "params")],
    # float64 tables: the VAE's latent and pixel logistics, the PixelCNN's mixtures
    # (autoregressive.py `_pixel_tables`: mixture_params, digits, digit_table)
    "probability tables (numpy)": [("compression/intervals.py", "digit_table"), ("compression/intervals.py", "digits"),
                                   ("compression/buckets.py", "latent_params"), ("compression/buckets.py", "centres"),
                                   ("compression/pixels.py", "pixel_params"),
                                   ("compression/pixels.py", "mixture_params")],
    "ANS coder (constriction)": [("compression/stack.py", name)
                                 for name in ("push", "pop", "push_uniform", "pop_uniform", "words")],
    # the information the codec reports (not needed for coding)
    "information accounting (numpy)": [("compression/stack.py", "table_bits")],
}
# part -> the part whose time runs inside it (subtracted where the outer part ran at all)
_INSIDE = {"raster decoder between steps (eager TF)": "networks (TensorFlow tf.functions)"}
OTHER = "other (Python glue, reshapes, container)"


def profile_encode(codec, images):
    """Share of encode time per part (cProfile cumulative times; the rest is Python glue)."""
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.runcall(codec.compress, images)
    whole = time.perf_counter() - start
    stats = pstats.Stats(profiler).stats
    seconds = {}
    for part, functions in _PARTS.items():
        seconds[part] = sum(cumulative for (filename, _, function), (_, _, _, cumulative, _) in stats.items()
                            if any(filename.endswith(suffix) and function == name for suffix, name in functions))
    for outer, inner in _INSIDE.items():
        if seconds[outer] > 0:
            seconds[outer] = max(seconds[outer] - seconds[inner], 0.0)
    shares = {part: s / whole for part, s in seconds.items() if s > 0}
    shares[OTHER] = 1.0 - sum(shares.values())
    return shares


def _warm_count(codec, count):
    """Images whose coding compiles the shapes a call on `count` images uses."""
    if isinstance(codec, AutoregressiveCodec):
        return min(codec.batch_size, count)  # one raster decoder per batch shape
    return min(2 * codec.batch_size, count)  # bits-back: fixed [batch_size, ...] steps


def _codec_name(model, label, codec):
    kind = "autoregressive ANS" if isinstance(codec, AutoregressiveCodec) else "bits-back ANS"
    precision = getattr(model, "precision", None)
    return f"{type(model).__name__}{' ' + precision if precision else ''} [{label}] ({kind})"


def _model_columns(model_info, images, net_bits, payload_bits, bound):
    dims = images.size
    model_bpd = 8.0 * model_info["packed_bytes"] / dims
    return {
        "net_bits_per_dim": net_bits / dims,
        "bits_per_dim_with_initial": payload_bits / dims,
        "bound_bits_per_dim": bound,
        "net_over_bound": (net_bits / dims) / bound,
        "packed_model_bytes": model_info["packed_bytes"],
        "packed_model_bytes_per_image": model_info["packed_bytes"] / len(images),
        "packed_model_bits_per_dim": model_bpd,
    }


def bench_model_whole(model_info, images, args):
    model, codec = model_info["model"], model_info["codec"]
    print(f"{model_info['name']}: whole set, {len(images)} images ...", flush=True)
    codec.compress(images[:_warm_count(codec, len(images))])  # compile the tf.functions outside the timing
    data = codec.compress(images, progress=args.progress)
    enc = codec.last_stats
    decoded = codec.decompress(data, progress=args.progress)
    dec = codec.last_stats
    bound = tools.elbo_bits_per_dim(model, images)
    profile_count = min(len(images), args.profile_images)
    if isinstance(codec, AutoregressiveCodec):  # the batch shape the warm-up compiled
        profile_count = max(profile_count, _warm_count(codec, len(images)))
    profile = profile_encode(codec, images[:profile_count])
    row = {
        "codec": model_info["name"], "scope": WHOLE_SET, "images": len(images), "model": model_info["label"],
        "model_class": type(model).__name__, "precision": getattr(model, "precision", None),
        "bytes": enc.file_bytes, "bits_per_dim": enc.file_bits_per_dim,
        **_model_columns(model_info, images, enc.net_bits, enc.payload_bits, bound),
        "initial_bits": enc.initial_bits,
        "encode_images_per_s": enc.images_per_second, "decode_images_per_s": dec.images_per_second,
        "exact": bool(np.array_equal(decoded, images)), "stored_files": int(enc.stored), "files": 1,
        "encode_time_share": profile, "profile_images": profile_count,
        "information_bits": enc.information, "params": codec.params(),
    }
    row["file_plus_model_bits_per_dim"] = row["bits_per_dim"] + row["packed_model_bits_per_dim"]
    return row


def _blob_bits(blob):
    """(payload bits, initial bits, stored) of one compressed file."""
    header, payload = container.unpack(blob)
    if header["codec"] == container.STORED:
        return 8 * int(np.asarray(payload).size), 0, True
    return 32 * int(payload.size), int(header["params"].get("initial_bits", 0)), False


def bench_model_each(model_info, images, args):
    model, codec = model_info["model"], model_info["codec"]
    print(f"{model_info['name']}: per image, {len(images)} files ...", flush=True)
    warm = min(EACH_BATCH_SIZE, len(images)) if isinstance(codec, AutoregressiveCodec) else 1
    codec.compress_each(images[:warm])  # compile outside the timing
    blobs, enc_s = _timed(lambda: codec.compress_each(images, progress=args.progress))
    decoded, dec_s = _timed(lambda: codec.decompress_each(blobs, progress=args.progress))
    bits = [_blob_bits(b) for b in blobs]
    payload, initial = sum(b[0] for b in bits), sum(b[1] for b in bits)
    bound = tools.elbo_bits_per_dim(model, images)
    total = sum(map(len, blobs))
    row = _row(model_info["name"], PER_IMAGE, total, images, enc_s, dec_s, model=model_info["label"],
               model_class=type(model).__name__, precision=getattr(model, "precision", None),
               **_model_columns(model_info, images, payload - initial, payload, bound),
               initial_bits=initial, stored_files=sum(b[2] for b in bits), files=len(blobs),
               file_bytes_min=min(map(len, blobs)), file_bytes_max=max(map(len, blobs)),
               exact=bool(np.array_equal(np.concatenate(decoded), images)), params=codec.params())
    row["file_plus_model_bits_per_dim"] = row["bits_per_dim"] + row["packed_model_bits_per_dim"]
    if row["stored_files"]:  # what the model's own code would have cost (encode only)
        code = codec.compress_each(images, allow_stored=False)
        code_bits = [_blob_bits(b) for b in code]
        dims = images.size
        row["model_code_only"] = {
            "bytes": sum(map(len, code)), "bits_per_dim": 8.0 * sum(map(len, code)) / dims,
            "net_bits_per_dim": sum(b[0] - b[1] for b in code_bits) / dims,
            "bits_per_dim_with_initial": sum(b[0] for b in code_bits) / dims}
    return row


# ---------------------------------------------------------------------------- output


_COLUMNS = [
    ("codec", "codec", "s"), ("scope", "scope", "s"), ("images", "images", "d"),
    ("bytes", "bytes", ","), ("bits/dim (file)", "bits_per_dim", ".4f"), ("net bits/dim", "net_bits_per_dim", ".4f"),
    ("with initial bits", "bits_per_dim_with_initial", ".4f"),
    ("model bound bits/dim (-ELBO; PixelCNN -log2 p)", "bound_bits_per_dim", ".4f"),
    ("net / bound", "net_over_bound", ".4f"), ("packed model bytes", "packed_model_bytes", ","),
    ("packed model bytes / image", "packed_model_bytes_per_image", ".1f"),
    ("packed model bits/dim", "packed_model_bits_per_dim", ".4f"),
    ("file + model bits/dim", "file_plus_model_bits_per_dim", ".4f"),
    ("encode img/s", "encode_images_per_s", ".1f"), ("decode img/s", "decode_images_per_s", ".1f"),
    ("files stored raw", "stored", "s"), ("exact", "exact", "s"),
]


def table(rows):
    lines = ["| " + " | ".join(title for title, _, _ in _COLUMNS) + " |", "|" + "---|" * len(_COLUMNS)]
    for row in rows:
        if "stored_files" in row:
            row = {**row, "stored": f"{row['stored_files']}/{row['files']}"}
        cells = ["" if row.get(key) is None else str(row[key]) if spec == "s" else format(row[key], spec)
                 for _, key, spec in _COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _split_models(entries):
    return [m.strip() for entry in entries or [] for m in entry.split(",") if m.strip()]


def machine_info():
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "processor": platform.processor(),
            "python": platform.python_version(), "tensorflow": tf.__version__, "keras_bdgm": keras_bdgm.__version__,
            "tools": {t: tool_version(t) for t in ("brotli", "zstd", "xz", "cjxl", "djxl") if shutil.which(t)}}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append",
                        help="a run folder (runs/x) or pretrained:<model>/<precision>[/<dataset>]; repeat or "
                             "separate with commas")
    parser.add_argument("--input", help="images: 'dataset:split' or a PNG folder (default: the first model's test split)")
    parser.add_argument("--num_images", type=int, default=10000, help="images of the whole-set rows")
    parser.add_argument("--per_image_images", type=int, default=1000,
                        help="the first this many images, one file each, for the per-image rows (0: none)")
    parser.add_argument("--batch_size", type=int, help="the model codecs' batch size (default: each codec's own)")
    parser.add_argument("--num_buckets", type=int, help="bits-back buckets per latent (default: the codec's own)")
    parser.add_argument("--profile_images", type=int, default=256)
    parser.add_argument("--progress", action="store_true", help="show progress bars")
    parser.add_argument("--json", default="bench/compression_output.json")
    args = parser.parse_args()
    command = shlex.join([os.path.relpath(sys.executable) if sys.executable else "python", *sys.argv])
    print(f"$ {command}")
    specs = _split_models(args.model)
    if not specs:
        parser.error("pass --model (a run folder or pretrained:<name>) at least once")

    models = []
    for spec in specs:
        model, label, path, dataset = load_model(spec)
        kwargs = {k: getattr(args, k) for k in ("batch_size", "num_buckets") if getattr(args, k) is not None}
        codec = compression.codec_for(model, **kwargs)  # codec_for drops num_buckets for the PixelCNN
        info = {"model": model, "label": label, "codec": codec, "dataset": dataset,
                "packed_path": path, "packed_bytes": packed_bytes(model, path)}
        info["name"] = _codec_name(model, label, codec)
        models.append(info)

    spec = args.input or f"{models[0]['dataset'] or 'fashion_mnist'}:test"
    if ":" in spec and not os.path.isdir(spec) and "[" not in spec:
        spec = f"{spec}[:{args.num_images}]"
    images = tools.load_images(spec)[: args.num_images]
    each_images = images[: args.per_image_images]
    print(f"{len(images)} images {images.shape[1:]} from {spec}; per image: the first {len(each_images)}", flush=True)

    notes, whole, each = [], [], []
    for info in models:
        whole.append(bench_model_whole(info, images, args))
    whole += python_codecs(images)
    with tempfile.TemporaryDirectory() as tmp:
        whole += cli_codecs(images, tmp, notes)
        whole += jxl_tall(images, tmp, notes)
        if len(each_images):
            for info in models:
                each.append(bench_model_each(info, each_images, args))
            each += jxl_per_image(each_images, tmp, notes)
            each.append(per_image_pillow("WebP lossless (method 6)", each_images,
                                         {"format": "WEBP", "lossless": True, "method": 6, "quality": 100}))
            each.append(per_image_pillow("PNG (optimize=True)", each_images, {"format": "PNG", "optimize": True}))
    rows = whole + each

    print(f"\n$ {command}\n")
    print(table(rows))
    print()
    for row in rows:
        if "encode_time_share" in row:
            shares = ", ".join(f"{name} {share:.0%}" for name, share in row["encode_time_share"].items())
            print(f"{row['codec']}: encode time ({row['profile_images']} images): {shares}")
        if row.get("stored_files"):
            line = (f"{row['codec']} ({row['scope']}): {row['stored_files']} of {row['files']} files stored as raw "
                    "pixels (the model's code was larger)")
            code = row.get("model_code_only")
            if code:
                line += (f"; the code alone: {code['bits_per_dim']:.4f} bits/dim per file, net "
                         f"{code['net_bits_per_dim']:.4f}, with initial bits {code['bits_per_dim_with_initial']:.4f}")
            print(line)
    for note in notes:
        print(f"note: {note}")
    not_exact = [f"{r['codec']} ({r['scope']})" for r in rows if not r["exact"]]
    if not_exact:
        print(f"NOT EXACT: {', '.join(not_exact)}")
    result = {"command": command, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "images": len(images), "per_image_images": len(each_images), "input": spec,
              "image_shape": list(images.shape[1:]), "machine": machine_info(), "notes": notes, "rows": rows}
    if args.json:
        compression.write_atomic(args.json, json.dumps(result, indent=2, default=_json_default).encode())
        print(f"wrote {args.json}")
    return 1 if not_exact else 0


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


if __name__ == "__main__":
    sys.exit(main())
