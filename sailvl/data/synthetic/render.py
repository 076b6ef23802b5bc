"""Drawing a scene with Pillow and encoding it; aliased drawing keeps every shape pixel exactly its named colour.

Images are drawn in palette mode (one byte per pixel, at most 11 colours): a palette PNG encodes about ten times
faster than an RGB one and is a third of the size, and decodes to exactly the same RGB pixels.
"""

from __future__ import annotations

import io
import math
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

from sailvl.data.synthetic.scene import BACKGROUNDS, COLOURS, TEXT_COLOUR, Item, Scene

JPEG_QUALITY = 90
_PALETTE = [*BACKGROUNDS.values(), *COLOURS.values(), TEXT_COLOUR[1]]
_INDEX = {rgb: i for i, rgb in enumerate(_PALETTE)}
_FLAT_PALETTE = [channel for rgb in _PALETTE for channel in rgb]


def render(scene: Scene) -> Image.Image:
    """The scene as a palette ("P") image; `.convert("RGB")` gives the named colours exactly."""
    image = Image.new("P", (scene.width, scene.height), _INDEX[BACKGROUNDS[scene.background]])
    image.putpalette(_FLAT_PALETTE)
    draw = ImageDraw.Draw(image)
    draw.fontmode = "1"  # no anti-aliasing: text pixels are the text colour or the background, nothing between
    for item in scene.shapes:
        _draw_shape(draw, item)
    if scene.word:
        _draw_word(draw, scene.word)
    return image


def encode(image: Image.Image, encoding: str) -> bytes:
    buffer = io.BytesIO()
    if encoding == "png":
        # Level 1 is several times faster than the default and these flat images compress well anyway.
        image.save(buffer, format="PNG", compress_level=1)
    elif encoding == "jpeg":
        image.convert("RGB").save(buffer, format="JPEG", quality=JPEG_QUALITY)
    else:
        raise ValueError(f"image encoding must be png or jpeg; found {encoding!r}")
    return buffer.getvalue()


def _draw_shape(draw: ImageDraw.ImageDraw, item: Item) -> None:
    x0, y0, x1, y1 = item.bbox
    fill = _INDEX[COLOURS[item.colour]]
    cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2
    if item.shape == "circle":
        draw.ellipse(item.bbox, fill=fill)
    elif item.shape == "square":
        draw.rectangle(item.bbox, fill=fill)
    elif item.shape == "triangle":
        draw.polygon([(cx, y0), (x1, y1), (x0, y1)], fill=fill)
    elif item.shape == "diamond":
        draw.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=fill)
    elif item.shape == "hexagon":
        draw.polygon(_regular(cx, cy, r, 6, 0.0), fill=fill)
    elif item.shape == "star":
        outer = _regular(cx, cy, r, 5, -math.pi / 2)
        inner = _regular(cx, cy, r * 0.5, 5, -math.pi / 2 + math.pi / 5)
        draw.polygon([p for pair in zip(outer, inner, strict=True) for p in pair], fill=fill)
    else:
        raise AssertionError(f"no drawing for shape {item.shape!r}")


def _regular(cx: float, cy: float, r: float, sides: int, start: float) -> list[tuple[float, float]]:
    return [
        (cx + r * math.cos(start + 2 * math.pi * k / sides), cy + r * math.sin(start + 2 * math.pi * k / sides))
        for k in range(sides)
    ]


def _draw_word(draw: ImageDraw.ImageDraw, item: Item) -> None:
    x0, y0, x1, y1 = item.bbox
    font = _fitting_font(item.text, x1 - x0 + 1, y1 - y0 + 1)
    left, top, right, bottom = font.getbbox(item.text)
    x = x0 + (x1 - x0 + 1 - (right - left)) // 2 - left
    y = y0 + (y1 - y0 + 1 - (bottom - top)) // 2 - top
    draw.text((x, y), item.text, fill=_INDEX[TEXT_COLOUR[1]], font=font)


@lru_cache(maxsize=512)
def _fitting_font(text: str, width: int, height: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """The largest of Pillow's built-in font sizes whose rendering of `text` fits 90% x 50% of the cell."""
    size = max(8, int(height * 0.5))
    while True:
        font = _font(size)
        left, top, right, bottom = font.getbbox(text)
        if (right - left <= width * 0.9 and bottom - top <= height * 0.5) or size <= 8:
            return font
        size -= 1


@lru_cache(maxsize=256)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)
