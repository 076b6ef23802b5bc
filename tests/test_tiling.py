"""Dynamic tiling: equal to transformers' own InternVL image processor, tile for tile and bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from transformers import GotOcr2ImageProcessorPil

from sailvl.data.tiling import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Tiler,
    TilingError,
    candidate_grids,
    choose_grid,
    image_token_string,
    tokens_per_tile,
)
from sailvl.data.tokens import IMG_CONTEXT, IMG_END, IMG_START

# (width, height, tile size, max tiles): aspect ratios from 1:40 to 40:1, sizes from a few pixels to 2000px,
# exact grid ratios, the 0.5 x grid-area tie-break on both sides of its threshold (896^2 and 950^2 vs 951^2 at
# 448px and up to 9 tiles), max tiles 1 (no cropping at all) to 24, and odd tile sides.
CASES = [
    (2000, 1500, 448, 12),
    (1500, 2000, 448, 12),
    (640, 480, 448, 6),
    (480, 640, 448, 6),
    (1000, 1000, 448, 6),
    (1000, 1000, 448, 12),
    (896, 896, 448, 9),
    (950, 950, 448, 9),
    (951, 951, 448, 9),
    (448, 448, 448, 12),
    (447, 449, 448, 12),
    (896, 448, 448, 8),
    (1792, 896, 448, 8),
    (633, 316, 448, 8),
    (634, 317, 448, 8),
    (1344, 448, 448, 6),
    (448, 1344, 448, 6),
    (2000, 50, 448, 12),
    (50, 2000, 448, 12),
    (3000, 75, 448, 24),
    (1, 1, 448, 12),
    (7, 3, 448, 12),
    (3, 7, 448, 6),
    (40, 1, 448, 12),
    (1, 40, 448, 12),
    (1280, 720, 448, 12),
    (720, 1280, 448, 12),
    (1600, 1000, 448, 6),
    (1024, 700, 448, 1),
    (300, 710, 448, 1),
    (333, 1999, 448, 12),
    (1999, 333, 448, 12),
    (1234, 567, 448, 4),
    (567, 1234, 448, 4),
    (800, 600, 448, 2),
    (600, 800, 448, 3),
    (1100, 900, 448, 5),
    (900, 1100, 448, 7),
    (1500, 500, 448, 10),
    (500, 1500, 448, 11),
    (224, 224, 224, 6),
    (500, 300, 224, 6),
    (300, 500, 224, 6),
    (1000, 250, 224, 12),
    (250, 1000, 224, 12),
    (1000, 618, 224, 12),
    (123, 456, 224, 6),
    (456, 123, 224, 6),
    (100, 130, 224, 1),
    (999, 998, 224, 9),
    (1414, 1000, 448, 6),
    (860, 1000, 448, 6),
    (1700, 700, 448, 8),
    (777, 1333, 448, 12),
    (1200, 1100, 224, 16),
    (448, 224, 224, 2),
    (672, 224, 224, 3),
    (700, 300, 196, 6),
    (300, 700, 28, 6),
    (97, 61, 57, 6),
]


def _image(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    low = rng.integers(0, 256, (max(height // 16, 1) + 1, max(width // 16, 1) + 1, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(low).resize((width, height), Image.Resampling.BILINEAR), dtype=np.int16)
    return Image.fromarray(np.clip(smooth + rng.integers(-20, 21, smooth.shape), 0, 255).astype(np.uint8))


def _peer(tile: int, max_tiles: int, min_tiles: int = 1) -> GotOcr2ImageProcessorPil:
    return GotOcr2ImageProcessorPil(
        crop_to_patches=True,
        min_patches=min_tiles,
        max_patches=max_tiles,
        size={"height": tile, "width": tile},
        image_mean=list(IMAGENET_MEAN),
        image_std=list(IMAGENET_STD),
    )


def test_cases_cover_at_least_fifty_sizes_and_aspect_ratios() -> None:
    assert len({(w, h) for w, h, _, _ in CASES}) >= 50
    assert len({round(w / h, 3) for w, h, _, _ in CASES}) >= 35


@pytest.mark.parametrize(("width", "height", "tile", "max_tiles"), CASES)
def test_tiles_equal_transformers_got_ocr2_image_processor(width: int, height: int, tile: int, max_tiles: int) -> None:
    image = _image(width, height, seed=width * 7919 + height)
    peer = _peer(tile, max_tiles)(image)
    ours = Tiler(tile_size=tile, max_tiles=max_tiles)(image)
    assert ours.shape[0] == peer["num_patches"][0]
    assert ours.shape == (len(peer["pixel_values"]), 3, tile, tile)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, np.stack(peer["pixel_values"]), rtol=0, atol=1e-5)
    assert np.array_equal(ours, np.stack(peer["pixel_values"]))  # in fact bit for bit


@pytest.mark.parametrize("mode", ["RGBA", "LA", "L", "P", "CMYK", "I;16"])
def test_other_modes_are_converted_as_transformers_converts_them(mode: str) -> None:
    rgba = np.asarray(_image(530, 310, seed=3).convert("RGBA")).copy()
    rgba[::3, :, 3] = 0  # transparent rows: composited onto white
    rgba[1::3, :, 3] = 128
    image = Image.fromarray(rgba, "RGBA")
    image = image.convert(mode) if mode != "I;16" else Image.fromarray(np.asarray(image.convert("L"), np.uint16) * 200)
    peer = np.stack(_peer(224, 6)(image)["pixel_values"])
    assert np.array_equal(Tiler(tile_size=224, max_tiles=6)(image), peer)


def test_an_rgb_colour_key_is_transparency_too() -> None:
    image = Image.fromarray(
        np.where(np.arange(300)[:, None, None] % 2, 30, 200).repeat(400, 1).repeat(3, 2).astype(np.uint8)
    )
    image.info["transparency"] = (30, 30, 30)  # as a PNG tRNS chunk loads: every other row is transparent
    peer = np.stack(_peer(224, 6)(image)["pixel_values"])
    ours = Tiler(tile_size=224, max_tiles=6)(image)
    assert np.array_equal(ours, peer)
    assert not np.array_equal(
        ours, Tiler(tile_size=224, max_tiles=6)(Image.fromarray(np.asarray(image)))
    )  # the key counts


def test_min_tiles_matches_transformers() -> None:
    image = _image(300, 200, seed=1)
    peer = _peer(224, 8, min_tiles=4)(image)
    ours = Tiler(tile_size=224, max_tiles=8, min_tiles=4)(image)
    assert ours.shape[0] == peer["num_patches"][0] == 7  # a 3x2 grid and the thumbnail
    assert np.array_equal(ours, np.stack(peer["pixel_values"]))


def test_uint8_arrays_tile_like_the_image_they_hold() -> None:
    image = _image(400, 250, seed=2)
    tiler = Tiler(tile_size=224, max_tiles=6)
    assert np.array_equal(tiler(np.asarray(image)), tiler(image))


@pytest.mark.parametrize(
    ("width", "height", "max_tiles", "grid"),
    [
        (2000, 1500, 12, (4, 3)),  # exactly 4:3
        (640, 480, 6, (3, 2)),  # 4:3 needs 12 tiles; 3:2 is closest within 6
        (1000, 1000, 6, (2, 2)),  # 1:1, 2:2 tie; 1e6 px > half of 4 tiles' 802,816 px
        (400, 400, 6, (1, 1)),  # the same tie, but 160,000 px < 401,408 px: one tile
        (950, 950, 9, (2, 2)),  # 902,500 px < half of 9 tiles (903,168 px)
        (951, 951, 9, (3, 3)),  # 904,401 px > 903,168 px
        (1, 40, 12, (1, 12)),  # as tall as the budget allows
        (1024, 768, 1, (1, 1)),
    ],
)
def test_grid_choice(width: int, height: int, max_tiles: int, grid: tuple[int, int]) -> None:
    assert choose_grid(width, height, 448, max_tiles) == grid


def test_candidate_grids_are_ordered_by_tile_count_as_internvl_orders_them() -> None:
    assert candidate_grids(1, 4) == ((1, 1), (1, 2), (2, 1), (1, 3), (3, 1), (1, 4), (2, 2), (4, 1))
    assert all(4 <= c * r <= 6 for c, r in candidate_grids(4, 6))


@pytest.mark.parametrize(("width", "height"), [(2000, 1500), (640, 480), (1000, 1000), (300, 300), (50, 2000)])
def test_num_tiles_counts_what_tiling_returns(width: int, height: int) -> None:
    tiler = Tiler(tile_size=224, max_tiles=12)
    assert tiler.num_tiles(width, height) == tiler(_image(width, height, seed=0)).shape[0]
    assert Tiler(tile_size=224, max_tiles=12, thumbnail=False).num_tiles(width, height) == (
        np.prod(tiler.grid(width, height))
    )


def test_tokens_per_tile_and_the_image_token_string() -> None:
    assert tokens_per_tile(448) == 256  # 32x32 patches, 2x2 pixel shuffle
    assert tokens_per_tile(224) == 64
    assert tokens_per_tile(28) == 1
    text = image_token_string(num_tiles=7, tokens_per_tile=256)
    assert text == IMG_START + IMG_CONTEXT * 1792 + IMG_END
    assert text.count(IMG_CONTEXT) == 7 * 256


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: tokens_per_tile(450), "multiple of the patch size 14"),
        (lambda: tokens_per_tile(14 * 3), "does not divide"),
        (lambda: image_token_string(0, 256), "at least one tile"),
        (lambda: Tiler(max_tiles=0), "min_tiles <= max_tiles"),
        (lambda: Tiler(min_tiles=5, max_tiles=4), "found min_tiles 5, max_tiles 4"),
        (lambda: Tiler(std=(0.2, 0.0, 0.2)), "std positive"),
        (lambda: Tiler(tile_size=0), "tile_size must be positive"),
        (lambda: choose_grid(0, 10, 448, 6), "found 0x10"),
        (lambda: Tiler()(np.zeros((4, 4, 3), np.float32)), "must be uint8"),
        (lambda: Tiler()("image.jpg"), "found str"),
    ],
)
def test_bad_settings_and_inputs_are_refused_clearly(call: object, message: str) -> None:
    with pytest.raises(TilingError, match=message):
        call()  # type: ignore[operator]
