"""A run's images: the class subset and its splits, decoded once into the decode cache, and batched."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Protocol, Sequence

import numpy as np
import torch

from . import synth
from ..atomic import TMP_PREFIX, TMP_SUFFIX, atomic_write_text, remove_temps
from .images import UNREADABLE, decode_threads, load_resized
from .layout import DatasetError, find_root, official_splits, read_classes, read_labels


class SubsetParams(Protocol):
    """What a run's parameters say about its data (foodcnn.params.Params has these; data needs nothing else of it)."""

    data_root: str
    classes: Sequence[str] | None
    num_classes: int
    val_fraction: float
    split_seed: int
    max_train_per_class: int | None
    max_test_per_class: int | None

log = logging.getLogger(__name__)


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


def _stratified_split(keys: list[str], fraction: float, rng: np.random.Generator) -> tuple[list[str], list[str]]:
    keys = sorted(keys)
    n_val = max(1, round(len(keys) * fraction)) if len(keys) > 1 else 0
    perm = rng.permutation(len(keys))
    val_idx = set(perm[:n_val].tolist())
    train = [k for i, k in enumerate(keys) if i not in val_idx]
    val = [k for i, k in enumerate(keys) if i in val_idx]
    return train, val


TEST_STREAM = int.from_bytes(b"test split", "big")  # names the test subsample's own random stream


def rng_for_test_images(split_seed: int, class_name: str) -> np.random.Generator:
    """Return the random stream that subsamples one class's test images: split_seed and the class alone seed it.

    Its own stream, so that every row with the same data, classes, max_test_per_class and split_seed is tested on
    the same images whatever its training subsample (max_train_per_class) or class order: paired comparisons of
    two rows (stats.compare) need the same test images on both sides.
    """
    name = int.from_bytes(hashlib.sha256(class_name.encode()).digest()[:8], "big")
    return np.random.default_rng([split_seed, TEST_STREAM, name])


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
    train_split, test_split = official_splits(root)
    rng = np.random.default_rng(split_seed)  # the training subsample and the validation split
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
            te_rng = rng_for_test_images(split_seed, c)
            te_keys = sorted(te_rng.choice(te_keys, max_test_per_class, replace=False).tolist())
        tr, va = _stratified_split(tr_keys, val_fraction, rng)
        train += samples(tr, label)
        val += samples(va, label)
        test += samples(te_keys, label)
    return Subset(root, chosen, train, val, test, synth.is_synthetic(root), read_labels(root, all_classes, chosen))


def subset_of(p: SubsetParams, root: str | Path | None = None) -> Subset:
    """Return a run's class subset and splits from its parameters (root: where the data is, when not p.data_root)."""
    return load_subset(p.data_root if root is None else root, p.classes, p.num_classes, p.val_fraction, p.split_seed,
                       p.max_train_per_class, p.max_test_per_class)


# --------------------------------------------------------------------------------------------
# Decoded-image cache: every image is decoded and resized once per (file list, size); later runs
# and epochs read uint8 pixels from memory (or a memory-mapped file).
# --------------------------------------------------------------------------------------------

CACHE_VERSION = 2  # 2: JPEGs decoded at reduced scale where the size allows (load_resized)


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
    """Yield (uint8 images (B,3,S,S), labels) batches (streams.ImageStream augments them on the model's device)."""
    n = len(data)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size].numpy()
        x = torch.from_numpy(np.ascontiguousarray(data.images[idx]))
        y = torch.from_numpy(data.labels[idx])
        yield x, y
