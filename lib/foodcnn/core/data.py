"""The Food-101 on-disk layout: reading it, choosing the class subset and splits, decoding images once, batching."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from . import synth
from .atomic import TMP_PREFIX, TMP_SUFFIX, atomic_write_text, remove_temps

if TYPE_CHECKING:
    from .params import Params

log = logging.getLogger(__name__)

LAYOUT = """\
Expected the Food-101 layout:
  <root>/images/<class>/<id>.jpg
  <root>/meta/classes.txt            one class per line
  <root>/meta/train.json, test.json  class -> ["class/id", ...]   (or train.txt, test.txt: lines "class/id")
where <root> is the food-101 folder itself or a folder that contains it.
To get data: `python -m foodcnn data synth --out data` writes the embedded synthetic dataset to data/food-101;
`python -m foodcnn data fetch --out data` downloads the real Food-101 (about 5 GB) through torchvision."""


class DatasetError(RuntimeError):
    """The dataset root is missing or does not follow the Food-101 layout."""


class BadImageError(RuntimeError):
    """An image could not be read and `bad_images: fail` was asked for."""


@dataclass(frozen=True)
class Sample:
    """One image of the dataset: its id ("class/id"), file and label index."""

    key: str
    path: Path
    label: int


@dataclass
class Subset:
    """The class subset with its official test split and a seeded, stratified validation split of train."""

    root: Path
    classes: list[str]
    train: list[Sample]
    val: list[Sample]
    test: list[Sample]
    synthetic: bool
    labels: list[str] = field(default_factory=list)

    def provenance(self) -> dict:
        """Return what a run records about its data: root, classes, counts and a hash of the id lists."""
        h = hashlib.sha256()
        for name in ("train", "val", "test"):
            h.update(name.encode())
            for s in getattr(self, name):
                h.update(s.key.encode() + b"\n")
        return {
            "root": str(self.root),
            "synthetic": self.synthetic,
            "classes": list(self.classes),
            "counts": {"train": len(self.train), "val": len(self.val), "test": len(self.test)},
            "ids_sha256": h.hexdigest(),
        }


def find_root(root: str | Path) -> Path:
    """Return the food-101 folder under `root` (root itself or root/food-101), or raise DatasetError."""
    root = Path(root).expanduser()
    for cand in (root, root / "food-101"):
        if (cand / "meta").is_dir() and (cand / "images").is_dir():
            return cand.resolve()
    if not root.exists():
        raise DatasetError(f"Dataset root {root} does not exist.\n{LAYOUT}")
    raise DatasetError(f"Dataset root {root} has no meta/ and images/ folders.\n{LAYOUT}")


# Meta files seen this process: a file read by several stages warns about its quirks once.
_WARNED: set[tuple[str, str]] = set()


def _warn_once(path: Path, message: str) -> None:
    if (str(path), message) not in _WARNED:
        _WARNED.add((str(path), message))
        log.warning("%s: %s", path, message)


def read_meta(path: Path, line_file: bool = True) -> str:
    """Return a meta file's text; a UTF-8 byte-order mark (and, in a line file, CRLF endings) read with one warning.

    Any other encoding raises DatasetError naming the file and the line: Food-101's meta files are UTF-8,
    and guessing another encoding could silently rename a class.
    """
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        shown = raw.split(b"\n")[line - 1].rstrip(b"\r")[:80]
        raise DatasetError(
            f"{path}, line {line}: not UTF-8 (byte 0x{raw[e.start]:02x} in {shown!r}). Meta files must be UTF-8: "
            f"save it again as UTF-8 (e.g. `iconv -f latin1 -t utf-8`, or 'UTF-8' in the editor's Save As)."
        ) from None
    quirks = []
    if text.startswith("\ufeff"):
        text = text[1:]
        quirks.append("a UTF-8 byte-order mark")
    if line_file and "\r\n" in text:
        quirks.append("Windows (CRLF) line endings")
    if quirks:
        _warn_once(path, f"has {' and '.join(quirks)}; read as plain UTF-8 lines")
    return text


def _numbered_lines(path: Path) -> list[tuple[int, str]]:
    """Return (line number, stripped text) of a meta file's non-empty lines."""
    return [(n, s) for n, line in enumerate(read_meta(path).splitlines(), 1) if (s := line.strip())]


def _dedupe(path: Path, items: list[tuple[int, str]], what: str) -> list[str]:
    """Return the items with repeats dropped (first kept), warning once when there were any."""
    first: dict[str, int] = {}
    repeats: list[tuple[str, int]] = []
    for n, item in items:
        if item in first:
            repeats.append((item, n))
        else:
            first[item] = n
    if repeats:
        item, n = repeats[0]
        where = f", lines {first[item]} and {n}" if n else ""
        _warn_once(path, f"{len(repeats)} repeated {what}(s) (first: {item!r}{where}); each is used once")
    return list(first)


def read_classes(root: Path) -> list[str]:
    """Return the class names of meta/classes.txt in file order (a repeated line counted once)."""
    path = root / "meta" / "classes.txt"
    if not path.is_file():
        raise DatasetError(f"{path} is missing.\n{LAYOUT}")
    return _dedupe(path, _numbered_lines(path), "class")


def read_split(root: Path, split: str) -> dict[str, list[str]]:
    """Return class -> ["class/id", ...] for the official split, from meta/<split>.json or .txt; each id once."""
    jpath, tpath = root / "meta" / f"{split}.json", root / "meta" / f"{split}.txt"
    if jpath.is_file():
        try:
            data = json.loads(read_meta(jpath, line_file=False))
        except json.JSONDecodeError as e:
            raise DatasetError(f"{jpath} is not valid JSON ({e}).\n{LAYOUT}") from None
        if not isinstance(data, dict):
            raise DatasetError(f"{jpath} must map class -> list of 'class/id'.\n{LAYOUT}")
        fix = f", or delete it so that {tpath.name} is read" if tpath.is_file() else ""
        for c, v in data.items():
            if not isinstance(v, list):
                found = f"a {type(v).__name__} ({str(v)[:60]!r})"
            elif bad := [k for k in v if not isinstance(k, str)]:
                found = f"a list with an item that is not a string ({str(bad[0])[:60]})"
            else:
                continue
            raise DatasetError(f"{jpath}: key {c!r} maps to {found}; it must be a list of 'class/id' strings "
                               f"such as [\"{c}/1005649\", ...]. Correct the file{fix}.")
        pairs = [(c, k) for c, v in data.items() for k in v]
        first_class: dict[str, str] = {}
        for c, k in pairs:
            first_class.setdefault(k, c)  # an id under two classes keeps its first
        out: dict[str, list[str]] = {}
        for k in _dedupe(jpath, [(0, k) for _, k in pairs], "id"):
            out.setdefault(first_class[k], []).append(k)
        return out
    if tpath.is_file():
        lines = _numbered_lines(tpath)
        for n, line in lines:
            if "/" not in line:
                raise DatasetError(f"{tpath}, line {n}: {line!r} is not 'class/id'.\n{LAYOUT}")
        out = {}
        for key in _dedupe(tpath, lines, "id"):
            out.setdefault(key.split("/", 1)[0], []).append(key)
        return out
    raise DatasetError(f"Neither {jpath} nor {tpath} exists.\n{LAYOUT}")


def _stratified_split(keys: list[str], fraction: float, rng: np.random.Generator) -> tuple[list[str], list[str]]:
    keys = sorted(keys)
    n_val = max(1, round(len(keys) * fraction)) if len(keys) > 1 else 0
    perm = rng.permutation(len(keys))
    val_idx = set(perm[:n_val].tolist())
    train = [k for i, k in enumerate(keys) if i not in val_idx]
    val = [k for i, k in enumerate(keys) if i in val_idx]
    return train, val


def load_subset(
    root: str | Path,
    classes: Sequence[str] | None = None,
    num_classes: int = 20,
    val_fraction: float = 0.2,
    split_seed: int = 0,
    max_train_per_class: int | None = None,
    max_test_per_class: int | None = None,
) -> Subset:
    """Return the class subset with train/val/test samples (SPEC §1); errors name the layout and the fix."""
    root = find_root(root)
    all_classes = read_classes(root)
    if classes is None:
        if len(all_classes) < num_classes:
            raise DatasetError(f"{root}/meta/classes.txt lists {len(all_classes)} classes; num_classes is {num_classes}")
        chosen = all_classes[:num_classes]
    else:
        missing = [c for c in classes if c not in all_classes]
        if missing:
            raise DatasetError(
                f"key 'classes': {', '.join(missing)} not in {root}/meta/classes.txt "
                f"(it has: {', '.join(all_classes[:30])}{' ...' if len(all_classes) > 30 else ''})"
            )
        chosen = list(classes)
    train_split, test_split = read_split(root, "train"), read_split(root, "test")
    in_test = {k for keys in test_split.values() for k in keys}
    leaked = sorted(k for keys in train_split.values() for k in keys if k in in_test)
    if leaked:  # an image both trained (or validated) and tested on would flatter the test accuracy
        _warn_once(root / "meta", f"{len(leaked)} id(s) are in both the train and the test split "
                                  f"(first: {leaked[0]!r}); each is kept in the test split only")
        train_split = {c: [k for k in keys if k not in in_test] for c, keys in train_split.items()}
    rng = np.random.default_rng(split_seed)
    train: list[Sample] = []
    val: list[Sample] = []
    test: list[Sample] = []

    def samples(keys: list[str], label: int) -> list[Sample]:
        return [Sample(k, root / "images" / f"{k}.jpg", label) for k in keys]

    for label, c in enumerate(chosen):
        tr_keys = sorted(train_split.get(c, []))
        te_keys = sorted(test_split.get(c, []))
        if not tr_keys or not te_keys:
            raise DatasetError(f"class {c!r} has no images in the official {'train' if not tr_keys else 'test'} split of {root}")
        if max_train_per_class and len(tr_keys) > max_train_per_class:
            tr_keys = sorted(rng.choice(tr_keys, max_train_per_class, replace=False).tolist())
        if max_test_per_class and len(te_keys) > max_test_per_class:
            te_keys = sorted(rng.choice(te_keys, max_test_per_class, replace=False).tolist())
        tr, va = _stratified_split(tr_keys, val_fraction, rng)
        train += samples(tr, label)
        val += samples(va, label)
        test += samples(te_keys, label)
    labels_path = root / "meta" / "labels.txt"
    labels = chosen
    if labels_path.is_file():
        names = [line for _, line in _numbered_lines(labels_path)]
        if len(names) == len(all_classes):
            labels = [names[all_classes.index(c)] for c in chosen]
    return Subset(root, chosen, train, val, test, synth.is_synthetic(root), labels)


# --------------------------------------------------------------------------------------------
# Reading images
# --------------------------------------------------------------------------------------------


def subset_of(p: Params, root: str | Path | None = None) -> Subset:
    """Return a run's class subset and splits from its parameters (root: where the data is, when not p.data_root)."""
    return load_subset(p.data_root if root is None else root, p.classes, p.num_classes, p.val_fraction, p.split_seed,
                       p.max_train_per_class, p.max_test_per_class)


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
    twice `size` px for the antialiased resize that follows (a Food-101 image of 512 px to 37 px: 2.4x faster,
    within about one grey level of the full decode on average).
    """
    im, full = _read_rgb(path, 2 * size, quiet)
    return resize_center(im, size, full if im.size != full else None)


# --------------------------------------------------------------------------------------------
# Decoded-image cache: every image is decoded and resized once per (file list, size); later runs
# and epochs read uint8 pixels from memory (or a memory-mapped file).
# --------------------------------------------------------------------------------------------

CACHE_VERSION = 2  # 2: JPEGs decoded at reduced scale where the size allows (load_resized)
# What a truncated, empty, damaged or foreign file raises while PIL decodes it.
UNREADABLE = (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


@dataclass
class Decoded:
    """Images of one split decoded to uint8 (N, 3, S, S), their labels and the images that could not be read."""

    images: np.ndarray
    labels: np.ndarray
    keys: list[str]
    bad: list[dict]
    key: str = ""  # the decode cache's key (source files, labels, size); "" where the pixels came from elsewhere

    def __len__(self) -> int:
        return len(self.labels)


def _cache_key(samples: Sequence[Sample], size: int) -> str:
    h = hashlib.sha256(f"v{CACHE_VERSION}:{size}".encode())
    for s in samples:
        try:
            st = os.stat(s.path)
            stamp = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            stamp = "missing"
        h.update(f"{s.path}|{stamp}|{s.label}\n".encode())
    return h.hexdigest()[:24]


def decode_threads() -> int:
    """Return how many threads decode images (PIL releases the GIL while it decodes and resizes): one per core."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def _load_one(path: Path, size: int) -> np.ndarray | BaseException:
    try:
        return load_resized(path, size, quiet=False)
    except UNREADABLE as e:
        return e


def _load_all(samples: Sequence[Sample], size: int, chunk: int = 256) -> Iterator[np.ndarray | BaseException]:
    """Yield load_resized (or the exception it raised) for every sample, in order, decoded by decode_threads()."""
    from concurrent.futures import ThreadPoolExecutor

    threads = decode_threads() if len(samples) > 1 else 1
    with warnings.catch_warnings(), ThreadPoolExecutor(max_workers=threads, thread_name_prefix="foodcnn-decode") as pool:
        warnings.simplefilter("ignore")  # PIL's palette-transparency and EXIF warnings, for every decode thread
        for start in range(0, len(samples), chunk):  # a chunk at a time: decoded images never pile up in memory
            paths = [s.path for s in samples[start:start + chunk]]
            yield from pool.map(_load_one, paths, [size] * len(paths))


def decode(
    samples: Sequence[Sample],
    size: int,
    cache_dir: str | Path | None = None,
    bad_images: str = "skip",
    progress: bool = True,
    desc: str = "decode",
) -> Decoded:
    """Return the samples decoded at `size`, read from the cache when its source files and size are unchanged.

    Unreadable images (truncated, empty, not an image) are skipped and listed in `bad`, or raise
    BadImageError when bad_images == "fail". The cache lives in `cache_dir` as <key>.npy + <key>.json
    (the JSON also lists the bad images, so a cached read reports them too), written atomically; a changed
    file (size or mtime), list or size gives a new key, and a damaged entry is decoded afresh.
    """
    from tqdm.auto import tqdm

    key = _cache_key(samples, size)
    npy = json_path = None
    if cache_dir is not None:
        cache_dir = Path(cache_dir)
        npy, json_path = cache_dir / f"{key}.npy", cache_dir / f"{key}.json"
        remove_temps(cache_dir, older_than_s=3600)  # left by a killed write; a live one (another run) is younger
        if npy.is_file() and json_path.is_file():
            try:
                meta = json.loads(json_path.read_text())
                images = np.load(npy, mmap_mode="r")
                keep = np.array(meta["keep"], dtype=np.int64)
                if images.shape[0] < len(keep) or images.shape[1:] != (3, size, size):
                    raise ValueError(f"holds {images.shape}, expected {(len(keep), 3, size, size)}")
                images = images[: len(keep)]  # rows past the readable images are unused padding
            except (OSError, ValueError, KeyError, TypeError) as e:
                log.warning("decode cache %s is damaged (%s); decoding afresh", npy, e)
            else:
                if bad_images == "fail" and meta["bad"]:
                    b = meta["bad"][0]
                    raise BadImageError(f"unreadable image {b['path']}: {b['error']} (set bad_images: skip to skip it)")
                return Decoded(images, np.array([samples[i].label for i in keep], dtype=np.int64),
                               [samples[i].key for i in keep], meta["bad"], key)
    shape = (len(samples), 3, size, size)
    tmp = None
    if npy is not None:
        # Decoded straight into a memory-mapped temp file beside the cache entry, so a split larger than
        # memory (all of Food-101 at 224 px is 15 GB) never has to fit in RAM; renamed into place when complete.
        npy.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=npy.parent, prefix=f"{TMP_PREFIX}{npy.name}.", suffix=TMP_SUFFIX)
        os.close(fd)
        tmp = Path(tmp_name)
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
    else:
        out = np.empty(shape, dtype=np.uint8)
    keep: list[int] = []
    bad: list[dict] = []
    try:
        for i, (s, img) in enumerate(tqdm(zip(samples, _load_all(samples, size)), total=len(samples), desc=desc,
                                          disable=not progress, leave=False)):
            try:
                if isinstance(img, BaseException):
                    raise img
                out[len(keep)] = img
                keep.append(i)
            except UNREADABLE as e:
                err = f"{type(e).__name__}: {e}"
                if bad_images == "fail":
                    raise BadImageError(f"unreadable image {s.path}: {err} (set bad_images: skip to skip it)") from e
                log.warning("skipping unreadable image %s (%s)", s.path, err)
                bad.append({"key": s.key, "path": str(s.path), "error": err})
        if tmp is not None and npy is not None and json_path is not None:
            out.flush()
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, npy)  # the rows after len(keep) stay as padding; readers slice them off
            atomic_write_text(json_path, json.dumps({"keep": keep, "bad": bad, "size": size}))  # last: marks complete
    finally:
        if tmp is not None and tmp.exists():
            tmp.unlink()
    out = out[: len(keep)]
    labels = np.array([samples[i].label for i in keep], dtype=np.int64)
    return Decoded(out, labels, [samples[i].key for i in keep], bad, key)


# --------------------------------------------------------------------------------------------
# Batches
# --------------------------------------------------------------------------------------------


def batches(
    data: Decoded,
    batch_size: int,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (uint8 images (B,3,S,S), labels) batches (train.ImageStream augments them on the model's device)."""
    n = len(data)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size].numpy()
        x = torch.from_numpy(np.ascontiguousarray(data.images[idx]))
        y = torch.from_numpy(data.labels[idx])
        yield x, y


def fetch_food101(out: str | Path) -> Path:
    """Download the real Food-101 through torchvision into `out` and return its food-101 folder."""
    import torchvision

    torchvision.datasets.Food101(root=str(out), split="train", download=True)
    return find_root(out)
