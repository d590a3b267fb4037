"""The Food-101 on-disk layout: finding its root and reading its meta files (classes, official splits, labels)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

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


def official_splits(root: Path) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Return the official (train, test) splits as read_split gives them, an id listed in both kept in test only."""
    train_split, test_split = read_split(root, "train"), read_split(root, "test")
    in_test = {k for keys in test_split.values() for k in keys}
    leaked = sorted(k for keys in train_split.values() for k in keys if k in in_test)
    if leaked:  # an image both trained (or validated) and tested on would flatter the test accuracy
        _warn_once(root / "meta", f"{len(leaked)} id(s) are in both the train and the test split "
                                  f"(first: {leaked[0]!r}); each is kept in the test split only")
        train_split = {c: [k for k in keys if k not in in_test] for c, keys in train_split.items()}
    return train_split, test_split


def read_labels(root: Path, all_classes: list[str], chosen: list[str]) -> list[str]:
    """Return the display names of `chosen` from meta/labels.txt (one per class of classes.txt), else the class names."""
    labels_path = root / "meta" / "labels.txt"
    if labels_path.is_file():
        names = [line for _, line in _numbered_lines(labels_path)]
        if len(names) == len(all_classes):
            return [names[all_classes.index(c)] for c in chosen]
    return chosen


def fetch_food101(out: str | Path) -> Path:
    """Download the real Food-101 through torchvision into `out` and return its food-101 folder."""
    import torchvision

    torchvision.datasets.Food101(root=str(out), split="train", download=True)
    return find_root(out)
