"""What the bench measures on: the demo subset of synthetic images at Food-101's size, the profiles' settings,
and the Setup (data, device, decode cache) that every measurement shares."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import Subset as IndexSubset

import reference
from foodcnn import params
from foodcnn.data import layout, subsets, synth

REPO = Path(__file__).resolve().parents[1]
PAPER_SIZE = 224
FOOD101_SIDE = 512  # the longest side of a Food-101 image (SPEC §1)


@dataclass
class Setup:
    """What every measurement shares: the data, the device, the demo settings and the decode cache."""

    subset: subsets.Subset
    device: torch.device
    cache_dir: Path
    demo: params.Params
    decoded: dict[int, subsets.Decoded] = field(default_factory=dict)
    decode_ips: dict[int, float] = field(default_factory=dict)

    def split(self, size: int) -> subsets.Decoded:
        """Return the train split decoded at `size`: a cold decode (timed) once, then the cache (memory-mapped)."""
        if size not in self.decoded:
            t0 = time.perf_counter()
            subsets.decode(self.subset.train, size, cache_dir=self.cache_dir, progress=False)
            self.decode_ips[size] = len(self.subset.train) / (time.perf_counter() - t0)
            self.decoded[size] = subsets.decode(self.subset.train, size, cache_dir=self.cache_dir, progress=False)
        return self.decoded[size]

    def reference_train(self, size: int, mean, std) -> IndexSubset:
        """Return the reports' dataset restricted to foodcnn's train images (their random_split)."""
        ds = reference.FoodFolder(self.subset.root, "train", classes=self.subset.classes,
                                  transform=reference.make_transform(size, mean=mean, std=std))
        keep = {str(s.path) for s in self.subset.train}
        return IndexSubset(ds, [i for i, (path, _) in enumerate(ds.samples) if path in keep])


def demo_params() -> tuple[params.Params, str]:
    """Return the demo profile's parameters (params/profiles/demo.yaml) and the file they came from."""
    path = params.profile_path("demo", REPO / "params")
    return params.from_mapping(params.read_yaml(path), source=str(path)), str(path.relative_to(REPO))


def paper_epochs() -> int:
    """Return the paper profile's epochs (params/profiles/paper.yaml)."""
    path = params.profile_path("paper", REPO / "params")
    return params.from_mapping(params.read_yaml(path), source=str(path)).epochs


def bench_root(source_side: int) -> Path:
    """Return where the bench keeps its synthetic images of this longest side (generated once, then reused)."""
    return REPO / "data" / "bench" / f"side-{source_side}" / "food-101"


def make_setup(device: torch.device, root: str | None, source_side: int | None = FOOD101_SIDE) -> Setup:
    """Return the shared set-up: the demo subset of `root`, else of synthetic images whose longest side is `source_side`.

    The reports' loop decodes and resizes every JPEG in every epoch, so its cost grows with the source images:
    by default the bench generates the demo's classes and counts at Food-101's resolution (longest side 512 px)
    rather than timing it on the embedded dataset's 128 px thumbnails. `source_side=None` uses the demo
    profile's own data (data/food-101).
    """
    demo, _ = demo_params()
    if root:
        data_root = Path(root)
    elif source_side is None:
        data_root = Path(demo.data_root)
    else:
        data_root = bench_root(source_side)
    if not data_root.is_absolute():
        data_root = REPO / data_root
    try:
        layout.find_root(data_root)
    except layout.DatasetError:
        out = data_root.parent if data_root.name == "food-101" else data_root
        if root is None and source_side is not None:
            print(f"generating synthetic images with a longest side of {source_side} px under {out} "
                  "(once; ~30 s) ...", flush=True)
            synth.generate(out, num_classes=demo.num_classes, train_per_class=demo.max_train_per_class or 40,
                           test_per_class=demo.max_test_per_class or 25, max_side=source_side, progress=False)
        else:
            print(f"generating the synthetic dataset under {out} ...", flush=True)
            synth.generate(out, progress=False)
    subset = subsets.subset_of(demo, data_root)
    cache = Path(tempfile.mkdtemp(prefix="foodcnn-bench-"))
    return Setup(subset, device, cache, demo)
