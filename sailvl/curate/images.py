"""What the workers learn from an image's bytes, in one decode: that it decodes at all, its size, the exact hash of
its pixels, its perceptual hash, and a smaller copy to send when the original is larger than a model can use.

The pixels are dropped as soon as these are known, so a worker holds encoded bytes only.
"""

from __future__ import annotations

import base64
import hashlib
import io
from dataclasses import dataclass

import imagehash
import numpy as np
from PIL import Image

# InternVL reads at most 12 tiles of 448 px; a side beyond 4 tiles only costs bandwidth and decode time.
REQUEST_MAX_SIDE = 1792
# Decode a JPEG at a reduced scale (its DCT does it almost for free) when nothing needs full-resolution pixels.
DRAFT_SIDE = 128
PHASH_REDUCE_TO = 64
MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485
MIMES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif", "BMP": "image/bmp"}


class BadImage(ValueError):
    """Bytes that do not decode to an image."""


@dataclass(frozen=True, kw_only=True)
class ImageFacts:
    width: int
    height: int
    mime: str
    exact: bytes | None = None
    """SHA-256 of the decoded RGB pixels and the size (the same picture in PNG and in lossless WebP hash alike)."""
    phash: int | None = None
    """64-bit DCT perceptual hash."""
    request_bytes: bytes | None = None
    """A downscaled JPEG to send instead of the original (None: send the original)."""

    @property
    def sides(self) -> tuple[int, int]:
        return self.width, self.height


def inspect_image(data: bytes, *, exact: bool = False, phash: bool = False, for_request: bool = False) -> ImageFacts:
    """Decode `data` once and compute what is asked; raises BadImage naming what went wrong."""
    try:
        image = Image.open(io.BytesIO(data))
        width, height = image.size
        # Checked before decoding (warnings filters are process-wide, so Pillow's warning cannot be made an error
        # from a pool thread): a decompression bomb is refused, not decoded.
        if width * height > MAX_PIXELS:
            raise BadImage(f"the image is {width}x{height}, over {MAX_PIXELS} pixels: refused as a decompression bomb")
        fmt = image.format or ""
        oversized = for_request and max(width, height) > REQUEST_MAX_SIDE
        if not exact:
            wanted = REQUEST_MAX_SIDE if oversized else DRAFT_SIDE
            image.draft("RGB", (wanted, wanted))
        image.load()
    except BadImage:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise BadImage(f"the image bytes ({len(data)} bytes) do not decode: {e}") from None
    if width < 1 or height < 1:
        raise BadImage(f"the image has no pixels ({width}x{height})")
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    return ImageFacts(
        width=width,
        height=height,
        mime=MIMES.get(fmt, "image/png"),
        exact=_exact(rgb) if exact else None,
        phash=_phash(rgb) if phash else None,
        request_bytes=_shrink(rgb) if oversized else (_png(rgb) if fmt not in MIMES else None),
    )


def _exact(rgb: Image.Image) -> bytes:
    digest = hashlib.sha256(f"{rgb.width}x{rgb.height}:".encode())
    digest.update(rgb.tobytes())
    return digest.digest()


def _phash(rgb: Image.Image) -> int:
    # A box reduction first: imagehash's LANCZOS resize straight to 32x32 would cost more than the decode itself.
    factor = min(rgb.size) // PHASH_REDUCE_TO
    small = rgb.reduce(factor) if factor > 1 else rgb
    bits = imagehash.phash(small).hash.flatten()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def _shrink(rgb: Image.Image) -> bytes:
    scale = REQUEST_MAX_SIDE / max(rgb.size)
    size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
    if max(rgb.size) > REQUEST_MAX_SIDE:
        rgb = rgb.resize(size, Image.Resampling.BICUBIC, reducing_gap=2.0)
    out = io.BytesIO()
    rgb.save(out, format="JPEG", quality=92)
    return out.getvalue()


def _png(rgb: Image.Image) -> bytes:
    out = io.BytesIO()
    rgb.save(out, format="PNG")
    return out.getvalue()


def data_uri(data: bytes, facts: ImageFacts) -> str:
    """The `image_url` an OpenAI-compatible server accepts: the request copy, else the original bytes."""
    if facts.request_bytes is not None:
        mime = "image/jpeg" if facts.request_bytes[:2] == b"\xff\xd8" else "image/png"
        return f"data:{mime};base64,{base64.b64encode(facts.request_bytes).decode('ascii')}"
    return f"data:{facts.mime};base64,{base64.b64encode(data).decode('ascii')}"


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()
