"""Lossless compression: the ResNet VAE's bits-back codec beside standard codecs, one run.

    python bench/compression.py --w1a1_dir=runs/vae_w1a1 --w32a32_dir=runs/vae_w32a32 \\
        [--num_images 10000] [--input fashion_mnist:test] [--json bench/compression_output.json]

For each trained model (a run folder of examples/train.py): bits/dim achieved by
`keras_bdgm.compression` (net, and with the initial bits, and the whole file), the
model's mean single-sample -ELBO on the same images (and the ratio), the packed model's
size, encode and decode images/s, and an exact-round-trip check; then where the encode
time goes (cProfile of --profile_images images: the networks, the numpy probability
tables, the ANS coder, the rest). Beside them, on the same images: PNG (optimize=True)
and WebP lossless (method 6) via Pillow, one file per image, and gzip -9, bz2 -9 and
lzma (preset 9 | PRESET_EXTREME) on the whole set as one raw uint8 array, each with its
encode and decode speed. Prints a markdown table and writes everything as JSON.

The images are the first --num_images of --input (default: the test split of the first
model's dataset, from its report.json/run.json).
"""

import argparse
import bz2
import cProfile
import gzip
import io
import json
import lzma
import os
import platform
import pstats
import tempfile
import time

import keras_bdgm  # noqa: F401  (Keras 2 before TensorFlow)
import numpy as np
from PIL import Image

from keras_bdgm import compression, memory

from keras_bdgm.runs import run_dir
from keras_bdgm.compression import tools


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _row(name, total_bytes, images, enc_s, dec_s, **extra):
    dims = images.size
    return {"codec": name, "bytes": int(total_bytes), "bits_per_dim": 8.0 * total_bytes / dims,
            "encode_images_per_s": len(images) / enc_s, "decode_images_per_s": len(images) / dec_s, **extra}


def per_image_codec(name, images, save_kwargs):
    """One file per image via Pillow; total bytes, speeds, and an exact-round-trip check."""
    mode = "L" if images.shape[-1] == 1 else None

    def encode():
        blobs = []
        for image in images:
            buf = io.BytesIO()
            Image.fromarray(image[..., 0] if mode else image, mode=mode).save(buf, **save_kwargs)
            blobs.append(buf.getvalue())
        return blobs

    blobs, enc_s = _timed(encode)
    # WebP stores grey images as RGB; decoding converts back to the images' own mode.
    decoded, dec_s = _timed(lambda: [np.asarray(Image.open(io.BytesIO(b)).convert(mode or "RGB")) for b in blobs])
    exact = np.array_equal(np.stack(decoded).reshape(images.shape), images)
    return _row(name, sum(map(len, blobs)), images, enc_s, dec_s, exact=exact)


def whole_array_codec(name, images, compress, decompress):
    raw = np.ascontiguousarray(images).tobytes()
    blob, enc_s = _timed(lambda: compress(raw))
    back, dec_s = _timed(lambda: decompress(blob))
    return _row(name, len(blob), images, enc_s, dec_s, exact=back == raw)


def baselines(images):
    return [
        per_image_codec("PNG (optimize=True), per image", images, {"format": "PNG", "optimize": True}),
        per_image_codec("WebP lossless (method 6), per image", images,
                        {"format": "WEBP", "lossless": True, "method": 6, "quality": 100}),
        whole_array_codec("gzip -9, whole set", images, lambda b: gzip.compress(b, 9), gzip.decompress),
        whole_array_codec("bz2 -9, whole set", images, lambda b: bz2.compress(b, 9), bz2.decompress),
        whole_array_codec("lzma 9|EXTREME, whole set", images,
                          lambda b: lzma.compress(b, preset=9 | lzma.PRESET_EXTREME), lzma.decompress),
    ]


def _packed_bytes(model_dir, model):
    path = os.path.join(model_dir, "model.bdgm")
    if os.path.exists(path):
        return os.path.getsize(path)
    with tempfile.TemporaryDirectory() as tmp:
        return memory.save_packed(model, os.path.join(tmp, "model.bdgm"))


# (file suffix, function) whose cumulative times do not overlap, per part of the encoder.
_PARTS = {
    "networks (TensorFlow)": [("polymorphic_function.py", "__call__")],
    "probability tables (numpy)": [("compression/intervals.py", "digit_table"),
                                   ("compression/buckets.py", "latent_params"), ("compression/buckets.py", "centres"),
                                   ("compression/pixels.py", "pixel_params")],
    "ANS coder (constriction)": [("compression/stack.py", name)
                                 for name in ("push", "pop", "push_uniform", "pop_uniform")],
}


def profile_encode(codec, images):
    """Share of encode time per part (cProfile cumulative times; the rest is Python glue)."""
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.runcall(codec.compress, images)
    whole = time.perf_counter() - start
    stats = pstats.Stats(profiler).stats
    shares = {}
    for part, functions in _PARTS.items():
        seconds = sum(cumulative for (filename, _, function), (_, _, _, cumulative, _) in stats.items()
                      if any(filename.endswith(suffix) and function == name for suffix, name in functions))
        shares[part] = seconds / whole
    shares["other (Python glue, conversions)"] = 1.0 - sum(shares.values())
    return shares


def bench_model(label, model_dir, images, args):
    model = tools.load_model(model_dir=model_dir)
    codec = compression.BitsBackCodec(model, num_buckets=args.num_buckets, batch_size=args.batch_size)
    codec.compress(images[: 2 * args.batch_size])  # compile the tf.functions outside the timing
    data = codec.compress(images, progress=args.progress)
    enc = codec.last_stats
    decoded = codec.decompress(data, progress=args.progress)
    dec = codec.last_stats
    elbo = tools.elbo_bits_per_dim(model, images)
    profile = profile_encode(codec, images[: args.profile_images])
    return {
        "codec": f"ResNet VAE {label} (bits-back ANS)",
        "model_dir": model_dir,
        "precision": getattr(model, "precision", None),
        "bytes": enc.file_bytes,
        "bits_per_dim": enc.file_bits_per_dim,
        "net_bits_per_dim": enc.net_bits_per_dim,
        "bits_per_dim_with_initial": enc.bits_per_dim_with_initial,
        "initial_bits": enc.initial_bits,
        "neg_elbo_bits_per_dim": elbo,
        "net_over_neg_elbo": enc.net_bits_per_dim / elbo,
        "packed_model_bytes": _packed_bytes(model_dir, model),
        "encode_images_per_s": enc.images_per_second,
        "decode_images_per_s": dec.images_per_second,
        "exact": bool(np.array_equal(decoded, images)),
        "encode_time_share": profile,
        "information_bits": enc.information,
        "params": {"num_buckets": args.num_buckets, "batch_size": args.batch_size},
    }


def _default_input(model_dir):
    settings = {}
    for name in (run_dir.CONFIG_FILE, run_dir.REPORT_FILE):
        path = os.path.join(model_dir, name)
        if os.path.exists(path):
            settings.update(json.load(open(path)))
    return f"{settings.get('dataset', 'fashion_mnist')}:test"


def table(rows):
    lines = ["| codec | bits/dim (file) | net bits/dim | with initial bits | -ELBO bits/dim | net / -ELBO "
             "| packed model bytes | encode img/s | decode img/s | exact |",
             "|---|---|---|---|---|---|---|---|---|---|"]

    def fmt(row, key, spec):
        return format(row[key], spec) if row.get(key) is not None else ""

    for row in rows:
        lines.append(
            f"| {row['codec']} | {row['bits_per_dim']:.4f} | {fmt(row, 'net_bits_per_dim', '.4f')} | "
            f"{fmt(row, 'bits_per_dim_with_initial', '.4f')} | {fmt(row, 'neg_elbo_bits_per_dim', '.4f')} | "
            f"{fmt(row, 'net_over_neg_elbo', '.4f')} | {fmt(row, 'packed_model_bytes', ',')} | "
            f"{row['encode_images_per_s']:.1f} | {row['decode_images_per_s']:.1f} | {row['exact']} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--w1a1_dir", help="run folder of the w1a1 ResNet VAE")
    parser.add_argument("--w32a32_dir", help="run folder of the w32a32 ResNet VAE")
    parser.add_argument("--input", help="images: 'dataset:split' or a PNG folder (default: the run's test split)")
    parser.add_argument("--num_images", type=int, default=10000)
    parser.add_argument("--num_buckets", type=int, default=compression.DEFAULT_NUM_BUCKETS)
    parser.add_argument("--batch_size", type=int, default=compression.DEFAULT_BATCH_SIZE)
    parser.add_argument("--profile_images", type=int, default=256)
    parser.add_argument("--progress", action="store_true", help="show progress bars")
    parser.add_argument("--json", default="bench/compression_output.json")
    args = parser.parse_args()
    models = [(label, d) for label, d in (("w1a1", args.w1a1_dir), ("w32a32", args.w32a32_dir)) if d]
    if not models:
        parser.error("pass --w1a1_dir and/or --w32a32_dir")
    spec = args.input or _default_input(models[0][1])
    if ":" in spec and not os.path.isdir(spec) and "[" not in spec:
        spec = f"{spec}[:{args.num_images}]"
    images = tools.load_images(spec)[: args.num_images]
    print(f"{len(images)} images {images.shape[1:]} from {spec}")
    rows = [bench_model(label, d, images, args) for label, d in models]
    rows += baselines(images)
    print(table(rows))
    for row in rows:
        if "encode_time_share" in row:
            shares = ", ".join(f"{name} {share:.0%}" for name, share in row["encode_time_share"].items())
            print(f"{row['codec']}: encode time: {shares}")
    result = {"images": len(images), "input": spec, "image_shape": list(images.shape[1:]),
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "processor": platform.processor()},
              "rows": rows}
    if args.json:
        compression.write_atomic(args.json, json.dumps(result, indent=2).encode())
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
