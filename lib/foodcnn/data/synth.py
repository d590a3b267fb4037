"""The embedded synthetic dataset: a small, seeded, learnable 20-class stand-in written in the Food-101 layout."""

from __future__ import annotations

import colorsys
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from tqdm.auto import tqdm

log = logging.getLogger(__name__)

SYNTH_MARKER = "SYNTHETIC"
CLASS_PREFIX = "synthetic_"  # every synthetic class name starts with it, so a run's class list says so too
# Bump when the drawing recipe changes so cached trees are regenerated.
GENERATOR_VERSION = 1

# The first 30 lines of Food-101's classes.txt; synthetic classes borrow them so reports read naturally.
FOOD101_NAMES = (
    "apple_pie baby_back_ribs baklava beef_carpaccio beef_tartare beet_salad beignets bibimbap "
    "bread_pudding breakfast_burrito bruschetta caesar_salad cannoli caprese_salad carrot_cake ceviche "
    "cheese_plate cheesecake chicken_curry chicken_quesadilla chicken_wings chocolate_cake "
    "chocolate_mousse churros clam_chowder club_sandwich crab_cakes creme_brulee croque_madame cup_cakes"
).split()

PATTERNS = ("plain", "hstripes", "vstripes", "checks", "dots")
# Six hues around the wheel, ordered so that the first four (used by 20 classes) are well spread.
HUES = (0.02, 0.52, 0.18, 0.68, 0.35, 0.85)
HUE_JITTER = 0.06
PATTERN_TILT = np.radians(20)
FAINT_FRACTION = 0.1
JPEG_QUALITY = 90
SCALE_FOOD, SCALE_CLUTTER = 0.4, 0.12  # object half-size as a fraction of the short side


def class_names(num_classes: int = 20) -> list[str]:
    """Return the sorted synthetic class names for the first num_classes Food-101 classes."""
    if not 1 <= num_classes <= len(FOOD101_NAMES):
        raise ValueError(f"num_classes must be in 1..{len(FOOD101_NAMES)}, got {num_classes}")
    return sorted(f"{CLASS_PREFIX}{name}" for name in FOOD101_NAMES[:num_classes])


def class_recipe(index: int) -> tuple[str, float]:
    """Return the (surface pattern, hue) that defines the class at this alphabetical index."""
    # Classes 0-19 cover every (pattern, hue) pair of 5 patterns x the first 4 hues, classes 20-29
    # those of the last 2 hues, so colour alone names a class only up to its pattern. The diagonal
    # order makes the first few classes differ in hue too: tiny test subsets stay easy to learn.
    group, pattern = divmod(index, len(PATTERNS))
    first, count = (0, 4) if index < 20 else (4, 2)
    return PATTERNS[pattern], HUES[first + (group + pattern) % count]


def _label(name: str) -> str:
    return name.replace("_", " ").capitalize()


def _settings(num_classes: int, train_per_class: int, test_per_class: int, max_side: int, seed: int) -> dict:
    return {
        "generator": "foodcnn.data.synth",
        "generator_version": GENERATOR_VERSION,
        "num_classes": num_classes,
        "train_per_class": train_per_class,
        "test_per_class": test_per_class,
        "max_side": max_side,
        "seed": seed,
    }


# ---------------------------------------------------------------- drawing


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, float(np.clip(s, 0, 1)), float(np.clip(v, 0, 1)))) * 255.0


def _silhouette(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Return a float mask in [0, 1] of a random convex-ish blob filling a box of this size."""
    w, h = size
    img = Image.new("L", (2 * w, 2 * h), 0)  # drawn at 2x and downsampled: cheap antialiasing
    k = int(rng.choice([3, 4, 5, 6, 24]))  # triangle ... hexagon, or a round blob
    t = np.linspace(0, 2 * np.pi, k, endpoint=False) + rng.uniform(0, 2 * np.pi)
    if k < 24:
        t = t + rng.uniform(-0.25, 0.25, k) * 2 * np.pi / k  # irregular, never a sliver
    rad = rng.uniform(0.8, 1.0, k) if k < 24 else 1 + 0.1 * np.sin(rng.integers(2, 5) * t + rng.uniform(0, 6))
    pts = np.stack([w * (1 + rad * np.cos(t)), h * (1 + rad * np.sin(t))], 1)
    ImageDraw.Draw(img).polygon([tuple(p) for p in pts], fill=255)
    return np.asarray(img.resize((w, h), Image.BILINEAR), dtype=np.float32) / 255.0


def _pattern(pattern: str, size: tuple[int, int], rng: np.random.Generator, period: float) -> np.ndarray:
    """Return the pattern's light/dark weight in [0, 1] over a box of this size."""
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    # Patterns keep their orientation up to a small tilt: orientation is part of the class, and
    # horizontal flips leave every pattern's distribution unchanged.
    a = rng.uniform(-PATTERN_TILT, PATTERN_TILT) + (np.pi / 2 if pattern == "vstripes" else 0.0)
    u = (x * np.sin(a) + y * np.cos(a)) / period + rng.uniform()
    v = (x * np.cos(a) - y * np.sin(a)) / period + rng.uniform()
    if pattern in ("hstripes", "vstripes"):
        return (np.sin(2 * np.pi * u) > 0).astype(np.float32)
    if pattern == "checks":
        return (np.sin(2 * np.pi * u) * np.sin(2 * np.pi * v) > 0).astype(np.float32)
    if pattern == "dots":
        du, dv = u - np.round(u), v - np.round(v)
        return (du * du + dv * dv < 0.09).astype(np.float32)
    return np.zeros((h, w), np.float32)  # plain


def _draw_object(canvas: np.ndarray, rng: np.random.Generator, pattern: str, hue: float, scale: float,
                 faint: bool = False) -> None:
    """Paint one patterned blob of the given hue at a random place of canvas (in place)."""
    H, W = canvas.shape[:2]
    r = min(W, H) * scale * rng.uniform(0.7, 1.3)
    w, h = max(2, int(r * rng.uniform(0.7, 1.0))), max(2, int(r * rng.uniform(0.7, 1.0)))
    cx, cy = int(rng.uniform(0.1, 0.9) * W), int(rng.uniform(0.1, 0.9) * H)
    mask = _silhouette((2 * w, 2 * h), rng)
    period = min(W, H) * rng.uniform(0.1, 0.16)
    light = _pattern(pattern, (2 * w, 2 * h), rng, period)

    base = _hsv(hue + rng.uniform(-HUE_JITTER, HUE_JITTER), rng.uniform(0.45, 1.0), rng.uniform(0.45, 1.0))
    contrast = rng.uniform(0.02, 0.1) if faint else rng.uniform(0.3, 0.8)
    shade = 1.0 + 0.25 * np.linspace(-1, 1, 2 * w)[None, :] * rng.normal()
    fill = base[None, None, :] * ((1 - contrast * light) * shade)[..., None]
    fill += rng.normal(0, 8, size=fill.shape)

    # Clip the object's box (2w x 2h, centred at cx, cy) to the canvas.
    x0, y0 = cx - w, cy - h
    cx0, cy0 = max(0, x0), max(0, y0)
    cx1, cy1 = min(W, x0 + 2 * w), min(H, y0 + 2 * h)
    m = mask[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0, None]
    region = canvas[cy0:cy1, cx0:cx1]
    region *= 1.0 - m
    region += m * fill[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]


def render(class_index: int, size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """Return one RGB image of the class at class_index, drawn with the given generator."""
    w, h = size
    pattern, hue = class_recipe(class_index)
    # Background: a random, mostly unsaturated tint with a soft gradient, unrelated to the class.
    bg = _hsv(rng.uniform(), rng.uniform(0.0, 0.3), rng.uniform(0.35, 0.95))
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
    grad = 1.0 + 0.3 * ((gx / w - 0.5) * rng.normal() + (gy / h - 0.5) * rng.normal())
    canvas = bg[None, None, :] * grad[..., None]

    # Clutter drawn from any recipe, first (partly hidden) and smaller than the food itself.
    n_recipes = len(PATTERNS) * len(HUES)
    for _ in range(rng.integers(0, 3)):
        o_pattern, o_hue = class_recipe(int(rng.integers(0, n_recipes)))
        _draw_object(canvas, rng, o_pattern, o_hue, SCALE_CLUTTER)

    # In some images the food barely shows its pattern and reads as "plain": a ceiling below 100 %.
    faint = bool(rng.uniform() < FAINT_FRACTION)
    for _ in range(rng.integers(1, 4)):
        _draw_object(canvas, rng, pattern, hue, SCALE_FOOD, faint)

    # Global colour jitter, sensor noise and blur.
    canvas *= rng.uniform(0.75, 1.25)
    canvas += rng.normal(0, rng.uniform(1, 5), size=canvas.shape)
    img = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8), "RGB")
    radius = rng.uniform(0.0, 0.8)
    if radius > 0.3:
        img = img.filter(ImageFilter.GaussianBlur(radius))
    return img


# ---------------------------------------------------------------- dataset tree


def is_synthetic(food101_root: str | Path) -> bool:
    """Return True if food101_root holds a tree written by this module (it has meta/SYNTHETIC)."""
    return (Path(food101_root) / "meta" / SYNTH_MARKER).is_file()


def names_synthetic(classes: Iterable[str]) -> bool:
    """Return True if any of these class names is one this module writes (a synthetic tree without its marker)."""
    return any(str(c).startswith(CLASS_PREFIX) for c in classes)


def read_settings(food101_root: Path) -> dict | None:
    """Return the generator settings a synthetic tree records in meta/SYNTHETIC, or None (not one, or unreadable)."""
    try:
        return json.loads((food101_root / "meta" / SYNTH_MARKER).read_text())["settings"]
    except (OSError, ValueError, KeyError):
        return None


def _is_complete(root: Path, settings: dict) -> bool:
    if read_settings(root) != settings:
        return False
    expected = settings["num_classes"] * (settings["train_per_class"] + settings["test_per_class"])
    return sum(1 for _ in (root / "images").glob("*/*.jpg")) == expected


def _image_size(rng: np.random.Generator, max_side: int) -> tuple[int, int]:
    short = int(round(max_side * rng.uniform(0.6, 1.0)))
    return (max_side, short) if rng.uniform() < 0.5 else (short, max_side)


def _write_tree(root: Path, names: list[str], settings: dict, progress: bool) -> None:
    seed, max_side = settings["seed"], settings["max_side"]
    counts = {"train": settings["train_per_class"], "test": settings["test_per_class"]}
    total = len(names) * sum(counts.values())
    # Unique numeric ids like the real data ("1005649"), fixed by the seed.
    ids = iter(np.random.default_rng([seed, 7919]).choice(9_000_000, size=total, replace=False) + 1_000_000)

    meta = root / "meta"
    meta.mkdir(parents=True)
    splits: dict[str, dict[str, list[str]]] = {"train": {}, "test": {}}
    with tqdm(total=total, desc="synthetic food-101", unit="img", disable=not progress) as bar:
        for c, name in enumerate(names):
            (root / "images" / name).mkdir(parents=True)
            for s, split in enumerate(("train", "test")):
                entries = splits[split].setdefault(name, [])
                for i in range(counts[split]):
                    # One generator per image: the bytes do not depend on generation order.
                    rng = np.random.default_rng([seed, s, c, i])
                    img = render(c, _image_size(rng, max_side), rng)
                    image_id = str(next(ids))
                    img.save(root / "images" / name / f"{image_id}.jpg", quality=JPEG_QUALITY)
                    entries.append(f"{name}/{image_id}")
                    bar.update()

    (meta / "classes.txt").write_text("".join(f"{n}\n" for n in names))
    (meta / "labels.txt").write_text("".join(f"{_label(n)}\n" for n in names))
    for split, mapping in splits.items():
        (meta / f"{split}.txt").write_text("".join(f"{e}\n" for n in names for e in mapping[n]))
        (meta / f"{split}.json").write_text(json.dumps(mapping, indent=1))

    counts_line = (f"{len(names)} classes, {counts['train']} train and {counts['test']} test images per class, "
                   f"longest side {max_side} px, seed {seed}")
    call_args = ", ".join(f"{k}={settings[k]}" for k in
                          ("num_classes", "train_per_class", "test_per_class", "max_side", "seed"))
    recipes = "".join(f"| {n} | {class_recipe(c)[0]} | {round(360 * class_recipe(c)[1])} |\n"
                      for c, n in enumerate(names))
    (root / "README.md").write_text(
        f"# {SYNTH_MARKER} Food-101 stand-in\n\n"
        "These images are SYNTHETIC: patterned blobs on cluttered backgrounds generated by `foodcnn.data.synth`, "
        "not photographs of food. Class names borrow Food-101's names with a `synthetic_` prefix; "
        "a class is a (surface pattern, hue) pair, so colour alone cannot tell the classes apart. "
        "The layout matches Food-101 so the real loader reads it.\n\n"
        f"{counts_line}.\n\nRegenerate with `foodcnn.data.synth.generate(out, {call_args})`.\n\n"
        f"| class | pattern | hue (degrees) |\n|---|---|---|\n{recipes}"
    )
    # Written last: its presence (after the atomic rename) means the tree is complete.
    (meta / SYNTH_MARKER).write_text(json.dumps({
        "note": f"{SYNTH_MARKER} data generated by foodcnn.data.synth; not real Food-101 images ({counts_line}).",
        "settings": settings,
    }, indent=1) + "\n")


def generate(out: str | Path, *, num_classes: int = 20, train_per_class: int = 40, test_per_class: int = 25,
             max_side: int = 128, seed: int = 0, progress: bool = True) -> Path:
    """Write a synthetic Food-101 tree under out/"food-101" and return that food-101 path."""
    names = class_names(num_classes)
    if train_per_class < 1 or test_per_class < 1:
        raise ValueError("train_per_class and test_per_class must be positive")
    if max_side < 16:
        raise ValueError(f"max_side must be at least 16, got {max_side}")
    if not 0 <= seed < 2**63:
        raise ValueError(f"seed must be an integer from 0 to 2**63 - 1, got {seed}")
    settings = _settings(num_classes, train_per_class, test_per_class, max_side, seed)
    out = Path(out)
    root = out / "food-101"

    if root.exists():
        if not is_synthetic(root):
            raise FileExistsError(f"{root} exists and is not a synthetic tree (no meta/{SYNTH_MARKER}); "
                                  "refusing to overwrite what may be the real Food-101")
        if _is_complete(root, settings):
            log.info("synthetic Food-101 already present at %s", root)
            return root
        log.info("synthetic Food-101 at %s has other settings; regenerating", root)

    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".food-101.", dir=out))
    try:
        log.info("generating synthetic Food-101 at %s (%s)", root, settings)
        _write_tree(tmp / "food-101", names, settings, progress)
        if root.exists():
            os.replace(root, tmp / "old")
        try:
            os.replace(tmp / "food-101", root)
        except OSError:
            # Another process (a parallel batch run) finished the same tree first: use theirs.
            if not (is_synthetic(root) and _is_complete(root, settings)):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root
