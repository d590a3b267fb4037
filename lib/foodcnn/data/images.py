"""Reading one image file: any mode or depth as 8-bit RGB, resized and centre-cropped to the study's square input."""

from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

# What a truncated, empty, damaged or foreign file raises while PIL decodes it.
UNREADABLE = (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


def read_rgb(path: Path, draft: int | None = None, quiet: bool = True) -> Image.Image:
    """Return the image as 8-bit RGB (grayscale, CMYK, palette, alpha and 16-bit converted); raise on unreadable.

    draft: let libjpeg decode a JPEG at 1/2, 1/4 or 1/8 scale (DCT scaling) as long as both sides stay at
    least `draft` px; other formats ignore it. quiet: silence PIL's palette-transparency and EXIF warnings
    (warnings.catch_warnings is not thread-safe: threads pass False inside one catch_warnings of their caller).
    """
    return _read_rgb(path, draft, quiet)[0]


def _read_rgb(path: Path, draft: int | None, quiet: bool) -> tuple[Image.Image, tuple[int, int]]:
    """Return read_rgb's image and the file's full size (before any draft reduction)."""
    with warnings.catch_warnings() if quiet else contextlib.nullcontext():
        if quiet:
            warnings.simplefilter("ignore")
        # PIL's process-wide switch: WeasyPrint turns it on when it is imported (the report's PDF), after which a
        # truncated photo would decode with its missing part grey instead of being named and skipped.
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        with Image.open(path) as im:
            full = im.size
            if draft is not None and im.format == "JPEG":
                im.draft(im.mode, (draft, draft))
            im.load()  # decode now: a truncated file raises OSError here, not later
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.float64)
                scale = 255.0 / 65535.0 if arr.max() > 255 else 1.0
                im = Image.fromarray(np.clip(arr * scale, 0, 255).astype(np.uint8), mode="L")
            elif im.mode == "F":
                arr = np.asarray(im)
                im = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), mode="L")
            if im.mode in ("P", "PA", "LA") or (im.mode == "RGBA"):
                im = im.convert("RGBA")
                background = Image.new("RGBA", im.size, (255, 255, 255, 255))
                im = Image.alpha_composite(background, im)
            return im.convert("RGB"), full


def resize_center(im: Image.Image, size: int, source_size: tuple[int, int] | None = None) -> np.ndarray:
    """Return a (3, size, size) uint8 array: shorter side resized to `size` (antialiased), then centre-cropped.

    source_size: the image's full size when `im` is a reduced decode of it (read_rgb's draft), so that the
    resize and crop geometry is the full image's, pixel for pixel.
    """
    w, h = source_size or im.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    im = im.resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=None)
    left, top = (nw - size) // 2, (nh - size) // 2
    im = im.crop((left, top, left + size, top + size))
    return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1).copy()


def load_resized(path: Path, size: int, quiet: bool = True) -> np.ndarray:
    """Return the image at `path` as resize_center gives it, decoded at a reduced scale where that is lossless enough.

    A JPEG whose shorter side is at least 4x `size` is decoded by libjpeg at 1/2-1/8 scale, keeping at least
    twice `size` px for the antialiased resize that follows: libjpeg then skips most of its inverse DCT work,
    and the result stays within a few grey levels of the full decode on average (tests/test_speed_paths.py).
    """
    im, full = _read_rgb(path, 2 * size, quiet)
    return resize_center(im, size, full if im.size != full else None)


def decode_threads() -> int:
    """Return how many threads decode images (PIL releases the GIL while it decodes and resizes): one per core."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))
