"""Preprocessing throughput: our tiling against transformers' own InternVL image processor, per CPU core.

Writes at least 300 JPEGs of mixed sizes (640x480 to 2000x1500, both sides drawn independently, so aspect ratios
from about 0.4 to 4) into a temporary folder, decodes each once, and times `sailvl.data.tiling.Tiler` and
`GotOcr2ImageProcessorPil(crop_to_patches=True, min_patches=1, max_patches=maxTiles)` on the same decoded images,
one process and one thread (images/s per core), at maxTiles 6 and 12, the two alternating so drift in the machine's
speed falls on both. Every output is compared: same tile count and bit-identical pixels. Decoding is timed apart
and reported, but not in the ratio: both sides receive the same decoded image, and it costs both the same.

The packing half (token utilisation of packed sequences) is `packing_figures()` below.

Run: `python benchmarks/preprocess.py [--images N]`. The last line of output is one JSON object.
"""

from __future__ import annotations

import os

# One thread everywhere, set before numpy and torch load: the figures are per core.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from sailvl.data.tiling import IMAGENET_MEAN, IMAGENET_STD, Tiler  # noqa: E402

TILE = 448
MAX_TILES = (6, 12)


def write_jpegs(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """JPEGs with smooth gradients, noise and shapes (so the encoder has real work), sizes 640x480..2000x1500."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        width, height = int(rng.integers(640, 2001)), int(rng.integers(480, 1501))
        low = rng.integers(0, 256, (height // 64 + 2, width // 64 + 2, 3), dtype=np.uint8)
        image = Image.fromarray(low).resize((width, height), Image.Resampling.BILINEAR)
        draw = ImageDraw.Draw(image)
        for _ in range(12):
            x0, y0 = int(rng.integers(0, width - 20)), int(rng.integers(0, height - 20))
            x1, y1 = x0 + int(rng.integers(10, width // 3)), y0 + int(rng.integers(10, height // 3))
            colour = tuple(int(v) for v in rng.integers(0, 256, 3))
            (draw.ellipse if i % 2 else draw.rectangle)((x0, y0, x1, y1), fill=colour)
        noise = rng.integers(-12, 13, (height, width, 3))
        pixels = np.clip(np.asarray(image, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
        path = folder / f"img-{i:04d}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(path)
    return paths


def decode(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def measure(paths: list[Path], max_tiles: int) -> dict[str, float | bool]:
    """Seconds spent by each side over all images, and whether every output was identical."""
    from transformers import GotOcr2ImageProcessorPil

    peer = GotOcr2ImageProcessorPil(
        crop_to_patches=True,
        min_patches=1,
        max_patches=max_tiles,
        size={"height": TILE, "width": TILE},
        image_mean=list(IMAGENET_MEAN),
        image_std=list(IMAGENET_STD),
    )
    ours = Tiler(tile_size=TILE, max_tiles=max_tiles)
    ours_s = peer_s = decode_s = 0.0
    identical = True
    tiles = 0
    for i, path in enumerate(paths):
        start = time.perf_counter()
        image = decode(path)
        decode_s += time.perf_counter() - start
        # Alternate who goes first so caches and clock changes do not favour one side.
        order = ("ours", "peer") if i % 2 == 0 else ("peer", "ours")
        for side in order:
            start = time.perf_counter()
            if side == "ours":
                ours_out = ours(image)
                ours_s += time.perf_counter() - start
            else:
                peer_out = peer(image, return_tensors="np")["pixel_values"]
                peer_s += time.perf_counter() - start
        identical = identical and ours_out.shape == peer_out.shape and np.array_equal(ours_out, peer_out)
        tiles += ours_out.shape[0]
    return {"ours_s": ours_s, "peer_s": peer_s, "decode_s": decode_s, "identical": identical, "tiles": tiles}


def packing_figures() -> dict[str, float]:
    """Token utilisation of best-fit packing on the synthetic SFT samples (tokenized as the trainer does) and on a
    log-normal length mix, against padding every sample to the row length (the peer)."""
    import numpy as np

    from sailvl.data.packing import plan_bins, utilization
    from sailvl.data.synthetic.generator import generate
    from sailvl.data.synthetic.spec import parse_synthetic_uri
    from sailvl.data.templates import Renderer
    from sailvl.data.tiling import Tiler, tokens_per_tile
    from sailvl.data.tokenizer import build_tiny_tokenizer

    tiler = Tiler(tile_size=224, max_tiles=6)
    render = Renderer(
        tokenizer=build_tiny_tokenizer(),
        template="chat",
        tiler=tiler,
        tokens_per_tile=tokens_per_tile(224),
        max_length=4096,
    )
    lengths = []
    for split in ("sft-knowledge", "sft-instruction", "sft-preference"):
        spec = parse_synthetic_uri(f"synthetic://shapes?split={split}&n=400&seed=11&size=224-672")
        lengths += [len(render(generate(spec, i))) for i in range(spec.n)]
    sft = utilization(lengths, plan_bins(lengths, 4096), 4096)
    rng = np.random.default_rng(0)
    mix = [int(min(4096, max(16, x))) for x in rng.lognormal(mean=6.5, sigma=0.9, size=20000)]
    lognormal = utilization(mix, plan_bins(mix, 4096), 4096)
    padded = sum(lengths) / (len(lengths) * 4096)
    print(
        f"packing at 4096 tokens: synthetic SFT ({len(lengths)} samples, median {int(np.median(lengths))} tokens) "
        f"{sft:.1%} utilised (padding each sample: {padded:.1%}); log-normal mix {lognormal:.1%}"
    )
    return {
        "packing_utilization": round(min(sft, lognormal), 4),
        "packing_utilization_sft": round(sft, 4),
        "packing_utilization_lognormal": round(lognormal, 4),
        "padding_utilization_sft": round(padded, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=300, help="JPEGs to generate (at least 300 for the record)")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    result: dict[str, float | bool] = {}
    with tempfile.TemporaryDirectory(prefix="sailvl-preprocess-") as folder:
        start = time.perf_counter()
        paths = write_jpegs(Path(folder), args.images)
        print(f"wrote {len(paths)} JPEGs (640x480 to 2000x1500) in {time.perf_counter() - start:.1f}s")
        identical = True
        for max_tiles in MAX_TILES:
            m = measure(paths, max_tiles)
            n = len(paths)
            ours_ips, peer_ips = n / float(m["ours_s"]), n / float(m["peer_s"])
            decode_ips = n / float(m["decode_s"])
            with_decode = (float(m["peer_s"]) + float(m["decode_s"])) / (float(m["ours_s"]) + float(m["decode_s"]))
            print(
                f"maxTiles {max_tiles:2d}: ours {ours_ips:6.1f} images/s/core, GotOcr2ImageProcessorPil "
                f"{peer_ips:6.1f} images/s/core, ratio {ours_ips / peer_ips:.2f}x; "
                f"{m['tiles'] / n:.1f} tiles/image; identical: {m['identical']}"
            )
            print(
                f"{'':13s}JPEG decode alone {decode_ips:6.1f} images/s/core; decode + tiling ratio {with_decode:.2f}x"
            )
            result[f"ratio_{max_tiles}"] = round(ours_ips / peer_ips, 3)
            result[f"images_per_s_ours_{max_tiles}"] = round(ours_ips, 2)
            result[f"images_per_s_peer_{max_tiles}"] = round(peer_ips, 2)
            result[f"ratio_with_decode_{max_tiles}"] = round(with_decode, 3)
            identical = identical and bool(m["identical"])
        result["identical"] = identical
    result.update(packing_figures())
    print(json.dumps(result))
    if not identical:
        raise SystemExit(1)  # a speed figure for a different output means nothing


if __name__ == "__main__":
    main()
