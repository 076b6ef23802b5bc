"""InternVL dynamic-resolution tiling: an image becomes a grid of square tiles plus a thumbnail.

The grid (cols x rows, at most `max_tiles` tiles) is the one whose aspect ratio is closest to the image's; on a tie
the later candidate wins while the image is larger than half the candidate's pixel area, exactly as InternVL's
`dynamic_preprocess` and transformers' `GotOcr2ImageProcessor` break it. The image is resized (bicubic) to the
grid, cut into tiles in row-major order and, when there is more than one tile, followed by the whole image
resized to one tile. Pixels are scaled to [0, 1] and normalised with the ImageNet mean and std.

The output equals transformers' `GotOcr2ImageProcessorPil(crop_to_patches=True)` bit for bit: the same Pillow
resizes, the same float32 arithmetic. It is faster (benchmarks/preprocess.py) because it resizes the Pillow image
directly, with no round trips through channel-first arrays, and normalises each tile through a lookup table
straight into one preallocated (tiles, 3, T, T) array, instead of three float64/float32 passes per tile. Pillow's
bicubic resize, which both share, is then three quarters of the time.

Each tile becomes `tokens_per_tile` visual tokens in the prompt: (tile / patch x downsample)^2, 256 at 448px.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

from sailvl.data.tokens import IMG_CONTEXT, IMG_END, IMG_START

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PATCH_SIZE = 14
DOWNSAMPLE_RATIO = 0.5
# Pillow's filter number for bicubic (Image.Resampling.BICUBIC); image processor configs store it.
BICUBIC = int(Image.Resampling.BICUBIC)


class TilingError(ValueError):
    """A tiling setting or an input image that cannot be tiled."""


@lru_cache(maxsize=64)
def candidate_grids(min_tiles: int, max_tiles: int) -> tuple[tuple[int, int], ...]:
    """Every (cols, rows) grid with min_tiles <= cols*rows <= max_tiles, by tile count, in InternVL's order."""
    grids = [
        (cols, rows)
        for cols in range(1, max_tiles + 1)
        for rows in range(1, max_tiles + 1)
        if min_tiles <= cols * rows <= max_tiles
    ]
    return tuple(sorted(grids, key=lambda grid: grid[0] * grid[1]))  # stable: ties keep cols-major order


def choose_grid(width: int, height: int, tile_size: int, max_tiles: int, min_tiles: int = 1) -> tuple[int, int]:
    """The (cols, rows) grid whose aspect ratio is closest to width/height; ties as InternVL breaks them."""
    if width < 1 or height < 1:
        raise TilingError(f"an image needs a positive width and height; found {width}x{height}")
    aspect = width / height
    area = width * height
    best, best_diff = (1, 1), float("inf")
    for cols, rows in candidate_grids(min_tiles, max_tiles):
        diff = abs(aspect - cols / rows)
        if diff < best_diff:
            best, best_diff = (cols, rows), diff
        elif diff == best_diff and area > 0.5 * tile_size * tile_size * cols * rows:
            # Equally close: prefer more tiles while the image has the pixels to fill them.
            best = (cols, rows)
    return best


def tokens_per_tile(tile_size: int, patch_size: int = PATCH_SIZE, downsample_ratio: float = DOWNSAMPLE_RATIO) -> int:
    """Visual tokens one tile becomes after the vision tower and the pixel shuffle: 256 for 448px tiles."""
    if tile_size % patch_size:
        raise TilingError(f"tile size must be a multiple of the patch size {patch_size}; found {tile_size}")
    side = tile_size // patch_size * downsample_ratio
    if side != int(side) or side < 1:
        raise TilingError(
            f"tile size {tile_size} gives {tile_size // patch_size} patches a side, which a downsample ratio of "
            f"{downsample_ratio} does not divide into whole tokens"
        )
    return int(side) ** 2


def image_token_string(num_tiles: int, tokens_per_tile: int) -> str:
    """The text an image stands for in a prompt: `<img>` + `<IMG_CONTEXT>` x (tokens per tile x tiles) + `</img>`."""
    if num_tiles < 1 or tokens_per_tile < 1:
        raise TilingError(
            f"an image needs at least one tile and one token per tile; found {num_tiles}, {tokens_per_tile}"
        )
    return IMG_START + IMG_CONTEXT * (num_tiles * tokens_per_tile) + IMG_END


def to_rgb(image: Image.Image | np.ndarray) -> Image.Image:
    """An RGB Pillow image; transparency is composited onto white (as transformers' image processors do)."""
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
            raise TilingError(
                f"an image array must be uint8 of shape (H, W), (H, W, 3) or (H, W, 4); found {image.dtype} "
                f"{image.shape}"
            )
        image = Image.fromarray(image)
    if not isinstance(image, Image.Image):
        raise TilingError(f"expected a PIL image or a uint8 array; found {type(image).__name__}")
    if "A" in image.getbands() or image.info.get("transparency") is not None:  # a palette or RGB colour key too
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


@dataclass(frozen=True, kw_only=True)
class Tiler:
    """Turns images into normalised (tiles, 3, tile_size, tile_size) float32 arrays for the vision tower."""

    tile_size: int = 448
    max_tiles: int = 12
    min_tiles: int = 1
    thumbnail: bool = True
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        # Tuples of floats whatever was passed (lists from a JSON config): the lookup tables are cached by them.
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        if self.tile_size < 1:
            raise TilingError(f"tile_size must be positive; found {self.tile_size}")
        if not 1 <= self.min_tiles <= self.max_tiles:
            raise TilingError(
                f"tiles must satisfy 1 <= min_tiles <= max_tiles; found min_tiles {self.min_tiles}, "
                f"max_tiles {self.max_tiles}"
            )
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise TilingError(f"mean and std need 3 values each, std positive; found mean {self.mean}, std {self.std}")

    def grid(self, width: int, height: int) -> tuple[int, int]:
        """The (cols, rows) grid an image of this size is cut into."""
        return choose_grid(width, height, self.tile_size, self.max_tiles, self.min_tiles)

    def num_tiles(self, width: int, height: int) -> int:
        """Tiles an image of this size becomes, thumbnail included: what a template needs to count tokens."""
        cols, rows = self.grid(width, height)
        return cols * rows + (1 if self.thumbnail and cols * rows > 1 else 0)

    def __call__(self, image: Image.Image | np.ndarray) -> np.ndarray:
        """The image's tiles, row-major, then the thumbnail: float32 of shape (tiles, 3, tile_size, tile_size)."""
        rgb = to_rgb(image)
        width, height = rgb.size
        cols, rows = self.grid(width, height)
        side = self.tile_size
        pixels_NCHW = np.empty((self.num_tiles(width, height), 3, side, side), dtype=np.float32)
        # Per-channel planes are contiguous along x: each tile row is read as whole pixel pairs (see _pair_tables).
        grid = rgb.resize((cols * side, rows * side), Image.Resampling.BICUBIC)
        tiles_RC3TT = pixels_NCHW[: rows * cols].reshape(rows, cols, 3, side, side)
        for c, plane in enumerate(grid.split()):
            plane_HW = np.asarray(plane)
            for r in range(rows):
                for k in range(cols):
                    tile = plane_HW[r * side : (r + 1) * side, k * side : (k + 1) * side]
                    self._normalise(tile, tiles_RC3TT[r, k, c], c)
        if pixels_NCHW.shape[0] > rows * cols:
            thumbnail = rgb.resize((side, side), Image.Resampling.BICUBIC)
            for c, plane in enumerate(thumbnail.split()):
                self._normalise(np.asarray(plane), pixels_NCHW[-1, c], c)
        return pixels_NCHW

    def _normalise(self, tile_u8: np.ndarray, out: np.ndarray, channel: int) -> None:
        """Write one channel of one tile, (T, T) uint8, into out, (T, T) float32, normalised."""
        if tile_u8.shape[1] % 2:  # odd tile sides have no whole pixel pairs: the table of single values
            np.take(_value_table(self.mean, self.std)[channel], tile_u8, out=out, mode="wrap")
            return
        # One lookup of two adjacent pixels (a uint16) yields both floats (an int64): half the lookups.
        pairs = tile_u8.view(np.uint16)
        np.take(_pair_tables(self.mean, self.std)[channel], pairs, out=out.view(np.int64), mode="wrap")


@lru_cache(maxsize=8)
def _value_table(mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """(3, 256) float32: the normalised value of every uint8, per channel.

    float32(v / 255) equals transformers' float32(float64(v) * (1 / 255)) for every uint8 v, and the mean and std
    steps are the same float32 operations, so tiles equal GotOcr2ImageProcessor's bit for bit.
    """
    values = np.arange(256, dtype=np.uint8)
    scaled = np.divide(values, np.float32(255.0), dtype=np.float32)
    return np.stack([(scaled - np.float32(m)) / np.float32(s) for m, s in zip(mean, std, strict=True)])


@lru_cache(maxsize=8)
def _pair_tables(mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """(3, 65536) int64: for two adjacent uint8 pixels read as one native uint16, their two floats as one int64."""
    single = _value_table(mean, std)
    pair = np.arange(65536, dtype=np.uint16).view(np.uint8).reshape(65536, 2)  # each uint16's bytes in memory order
    floats = np.stack([single[c][pair] for c in range(3)])  # (3, 65536, 2) float32, in memory order
    return np.ascontiguousarray(floats).view(np.int64).reshape(3, 65536)
