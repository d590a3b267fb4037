"""What a Food-101 tree holds: classes, images per split and class, image sizes and colour modes, unreadable files, and whether it is synthetic."""

from __future__ import annotations

import statistics
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from . import images, layout, synth

SPLITS = ("train", "test")
# The reports' input size (SPEC §2): a source with a shorter side below it is upsampled at the paper profile.
REPORTS_PX = 224
# Beyond this many classes the per-class counts are summarised (full Food-101 has 101).
CLASS_TABLE_MAX = 30
SHOW = 10  # files named per problem


@dataclass
class TreeCheck:
    """What check() found in one tree."""

    root: Path
    classes: list[str]
    counts: dict[str, dict[str, int]]  # split -> class -> images listed in meta/
    synthetic_marker: bool
    synthetic_names: bool
    synth_settings: dict | None
    sizes: Counter = field(default_factory=Counter)  # (width, height) of every readable listed image
    modes: dict[str, list[str]] = field(default_factory=dict)  # PIL mode -> keys
    formats: Counter = field(default_factory=Counter)
    unreadable: list[dict] = field(default_factory=list)  # {"key", "error"}; a listed file that is missing too
    unlisted: int = 0  # .jpg files under images/ that no split lists
    foreign_classes: list[str] = field(default_factory=list)  # in a split but not in classes.txt

    @property
    def synthetic(self) -> bool:
        """Return True when the tree marks itself synthetic (meta/SYNTHETIC) or names its classes synthetic_*."""
        return self.synthetic_marker or self.synthetic_names

    @property
    def n_images(self) -> int:
        """Return how many images the splits list."""
        return sum(sum(c.values()) for c in self.counts.values())


def _inspect(path: Path) -> tuple[tuple[int, int], str, str] | BaseException:
    """Return (size, mode, format) of one image after decoding it in full (at 1/8 scale for a JPEG), or the error."""
    try:
        with Image.open(path) as im:
            size, mode, fmt = im.size, im.mode, im.format or "?"
            if fmt == "JPEG":
                im.draft(im.mode, (1, 1))  # every byte is still decoded, so truncation shows, at a fraction of the cost
            im.load()
        return size, mode, fmt
    except images.UNREADABLE as e:
        return e


def check(root: str | Path, progress: bool = True) -> TreeCheck:
    """Return what the Food-101 tree at `root` (the food-101 folder or its parent) holds; every listed image is decoded."""
    from tqdm.auto import tqdm

    base = layout.find_root(root)
    classes = layout.read_classes(base)
    splits = {s: layout.read_split(base, s) for s in SPLITS}
    listed = {s: {c: keys for c, keys in splits[s].items() if c in classes} for s in SPLITS}
    out = TreeCheck(
        root=base, classes=classes,
        counts={s: {c: len(listed[s].get(c, [])) for c in classes} for s in SPLITS},
        synthetic_marker=synth.is_synthetic(base), synthetic_names=synth.names_synthetic(classes),
        synth_settings=synth.read_settings(base),
        foreign_classes=sorted({c for s in SPLITS for c in splits[s]} - set(classes)),
    )
    keys = [k for s in SPLITS for c in classes for k in listed[s].get(c, [])]
    paths = [base / "images" / f"{k}.jpg" for k in keys]
    known = {p.resolve() for p in paths}
    out.unlisted = sum(1 for p in (base / "images").glob("*/*.jpg") if p.resolve() not in known)
    threads = images.decode_threads()
    with warnings.catch_warnings(), ThreadPoolExecutor(max_workers=threads) as pool:
        warnings.simplefilter("ignore")  # PIL's EXIF and palette warnings: the file is still read
        found = tqdm(pool.map(_inspect, paths), total=len(paths), desc="check images", unit="img",
                     disable=not progress, leave=False)
        for key, info in zip(keys, found):
            if isinstance(info, BaseException):
                out.unreadable.append({"key": key, "error": f"{type(info).__name__}: {info}"})
                continue
            size, mode, fmt = info
            out.sizes[size] += 1
            out.modes.setdefault(mode, []).append(key)
            out.formats[fmt] += 1
    return out


def _share(n: int, total: int) -> str:
    return f"{n} ({100 * n / total:.0f} %)" if total else str(n)


def _counts_lines(c: TreeCheck) -> list[str]:
    lines = []
    for s in SPLITS:
        per = list(c.counts[s].values())
        spread = f"{min(per)} to {max(per)} per class (median {statistics.median(per):g})" if per else "none"
        if per and min(per) == max(per):
            spread = f"{per[0]} per class"
        lines.append(f"  {s}: {sum(per)} images, {spread}")
    if len(c.classes) <= CLASS_TABLE_MAX:
        width = max(len(name) for name in c.classes)
        lines.append(f"  {'class':<{width}}  " + "  ".join(f"{s:>5}" for s in SPLITS))
        lines += [f"  {name:<{width}}  " + "  ".join(f"{c.counts[s][name]:>5}" for s in SPLITS) for name in c.classes]
    else:
        typical = {s: Counter(c.counts[s].values()).most_common(1)[0][0] for s in SPLITS}
        odd = [name for name in c.classes if any(c.counts[s][name] != typical[s] for s in SPLITS)]
        lines.append(f"  classes with other counts than {' / '.join(str(typical[s]) for s in SPLITS)} "
                     f"({' / '.join(SPLITS)}): " + (", ".join(f"{n} ({'/'.join(str(c.counts[s][n]) for s in SPLITS)})"
                                                         for n in odd[:SHOW]) or "none")
                     + (" ..." if len(odd) > SHOW else ""))
    return lines


def _size_lines(c: TreeCheck) -> list[str]:
    total = sum(c.sizes.values())
    if not total:
        return ["image sizes: no readable image"]
    short = sorted(min(s) for s in c.sizes.elements())
    long_ = sorted(max(s) for s in c.sizes.elements())
    common = ", ".join(f"{w}x{h} {_share(n, total)}" for (w, h), n in c.sizes.most_common(3))
    small = sum(1 for s in short if s < REPORTS_PX)
    return [
        f"image sizes: {len(c.sizes)} distinct; most common {common}",
        f"  shorter side {short[0]} to {short[-1]} px (median {statistics.median(short):g}), "
        f"longer side {long_[0]} to {long_[-1]} px (median {statistics.median(long_):g})",
        f"  shorter side below {REPORTS_PX} px (the reports' input; upsampled wherever a model's input is larger): "
        f"{_share(small, total)}",
    ]


def _mode_lines(c: TreeCheck) -> list[str]:
    total = sum(len(v) for v in c.modes.values())
    modes = ", ".join(f"{m} {_share(len(v), total)}" for m, v in sorted(c.modes.items(), key=lambda kv: -len(kv[1])))
    lines = [f"colour modes: {modes or 'none'}; file formats: "
             + ", ".join(f"{f} {n}" for f, n in c.formats.most_common())]
    for mode, keys in sorted(c.modes.items()):
        if mode != "RGB":
            what = "grayscale" if mode in ("L", "LA", "I", "I;16", "F", "1") else mode
            lines.append(f"  {what} ({mode}, converted to RGB when decoded): {len(keys)}: "
                         + ", ".join(keys[:SHOW]) + (" ..." if len(keys) > SHOW else ""))
    return lines


def summary(c: TreeCheck) -> str:
    """Return what `python -m foodcnn data check` prints about a checked tree."""
    if c.synthetic_marker:
        s = c.synth_settings or {}
        kind = (f"yes: meta/{synth.SYNTH_MARKER} written by foodcnn.data.synth (seed {s.get('seed', '?')}, "
                f"{s.get('train_per_class', '?')} train + {s.get('test_per_class', '?')} test per class, "
                f"longest side {s.get('max_side', '?')} px)")
    elif c.synthetic_names:
        kind = f"yes: class names start with {synth.CLASS_PREFIX} (meta/{synth.SYNTH_MARKER} is missing)"
    else:
        kind = (f"no (no meta/{synth.SYNTH_MARKER}, no {synth.CLASS_PREFIX}* class names): runs on it count as "
                "real photos and their comparisons get verdicts")
    lines = [f"{c.root}", f"synthetic: {kind}",
             f"classes: {len(c.classes)} in meta/classes.txt (first: {', '.join(c.classes[:3])}"
             f"{' ...' if len(c.classes) > 3 else ''})",
             f"images listed: {c.n_images}"]
    lines += _counts_lines(c)
    if c.foreign_classes:
        lines.append(f"  listed in a split but not in classes.txt (ignored): {', '.join(c.foreign_classes[:SHOW])}")
    if c.unlisted:
        lines.append(f"  .jpg files under images/ that no split lists (never read): {c.unlisted}")
    lines += _size_lines(c) + _mode_lines(c)
    if c.unreadable:
        lines.append(f"unreadable or missing: {len(c.unreadable)} (runs skip them and list them, or stop with "
                     "bad_images: fail)")
        lines += [f"  {b['key']}: {b['error']}" for b in c.unreadable[:SHOW]]
        if len(c.unreadable) > SHOW:
            lines.append(f"  ... and {len(c.unreadable) - SHOW} more")
    else:
        lines.append("unreadable or missing: none")
    return "\n".join(lines)
