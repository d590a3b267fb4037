"""The GPU side of benchmarks/bench.py (--device cuda): images/s at 224 px with AMP; the paper catalogue's wall time."""

from __future__ import annotations

import argparse
import os
import shutil
from dataclasses import dataclass

import torch

from foodcnn import features, models, params, train
from schedule import projection
from measure import (PAPER_SIZE, REPO, make_setup, describe_machine, measure_eval, measure_features, measure_ours,
                     measure_reference, measure_wide, patched, pct, table, train_one_epoch_nosync)

FAMILIES = [n for n in models.in_order() if n != "vgg16"]  # vgg16_bn times both VGGs


# SPEC §4, one row per params file: (id, model, freeze, augment, model knobs). Used when params/*.yaml is absent.
CATALOGUE = [
    ("a_baseline", "baseline", "none", "none", {}),
    ("a_new_ini", "baseline", "none", "none", {"init": "normal"}),
    ("a_new_p_0.4", "baseline", "none", "none", {"dropout": 0.4}),
    ("a_new_p_0.6", "baseline", "none", "none", {"dropout": 0.6}),
    ("a_i_lr", "baseline", "none", "none", {}),
    ("a_d_lr", "baseline", "none", "none", {}),
    ("a_new_arc", "custom_a", "none", "none", {}),
    ("a_ron_flip", "baseline", "none", "hflip", {}),
    ("a_custom", "custom_a", "none", "hflip", {}),
    ("a_vgg16", "vgg16", "head", "none", {}),
    ("a_vgg16_3x", "vgg16", "every_nth:3", "none", {}),
    ("a_vgg16_new_lr", "vgg16", "head", "none", {}),
    ("a_resnet18", "resnet18", "head", "none", {}),
    ("a_resnet18_10x", "resnet18", "every_nth:10", "none", {}),
    ("a_resnet18_ron_flip", "resnet18", "head", "hflip", {}),
    ("b_baseline", "baseline", "none", "none", {}),
    ("b_custom1", "baseline", "none", "none", {"extra_convs": 2, "extra_convs_after": "conv3"}),
    ("b_custom2", "baseline", "none", "none", {"activation": "silu"}),
    ("b_custom3", "baseline", "none", "none", {"extra_pool_after": "conv2"}),
    ("b_custom4", "baseline", "none", "none", {}),
    ("b_custom5", "custom_b", "none", "none", {}),
    ("b_custom6", "custom_b", "none", "none", {"activation": "silu"}),
    ("b_custom7", "custom_b", "none", "none", {}),
    ("b_resnet_stock", "resnet18", "head", "none", {}),
    ("b_resnet1", "resnet18", "none", "none", {}),
    ("b_resnet2", "resnet18", "none", "none", {}),
    ("b_resnet3", "resnet18", "head", "none", {}),
    ("b_resnet4", "resnet18", "conv1", "none", {}),
    ("b_resnet5", "resnet18", "conv1", "wide", {}),
    ("b_resnet6", "resnet18", "none", "wide", {}),
    ("b_vgg_stock", "vgg16_bn", "head", "none", {}),
    ("b_vgg1", "vgg16_bn", "none", "none", {}),
    ("b_vgg2", "vgg16_bn", "none", "none", {}),
    ("b_vgg3", "vgg16_bn", "conv1", "none", {}),
    ("b_vgg4", "vgg16_bn", "none", "wide", {}),
    ("b_vgg5", "vgg16_bn", "none", "wide", {}),
    ("b_vgg6", "vgg16_bn", "conv1", "wide", {}),
]
# SPEC §1/§3: 750 train images per class (20 % of them validation), 250 test, 20 classes, up to 25 epochs.
PAPER_COUNTS = {"train": 20 * 600, "val": 20 * 150, "test": 20 * 250}
KNOB_KEYS = ("activation", "dropout", "init", "extra_convs", "extra_convs_after", "extra_pool_after")


@dataclass
class Row:
    id: str
    model: str
    freeze: str
    augment: str
    knobs: dict
    epochs: int = 25
    batch: int = 32
    size: int = PAPER_SIZE
    seeds: int = 1


def catalogue(profile: str = "paper") -> tuple[list[Row], str]:
    """Return the catalogue rows under a profile: from params/*.yaml when present, else SPEC §4's 37 rows."""
    files = sorted((REPO / "params").glob("*.yaml"))
    if not files:
        return [Row(i, m, f, a, k) for i, m, f, a, k in CATALOGUE], "SPEC §4 (37 rows; no params/*.yaml yet)"
    prof = REPO / "params" / "profiles" / f"{profile}.yaml"
    rows = []
    for path in files:
        p = params.load(path, profile=str(prof) if prof.is_file() else None)
        knobs = {k: getattr(p, k) for k in KNOB_KEYS}
        rows.append(Row(p.id, p.model, p.freeze, p.augment, knobs, p.epochs, p.batch_size, p.resolved_image_size,
                        len(p.seeds)))
    return rows, f"{len(files)} files in params/" + (f" + profiles/{profile}.yaml" if prof.is_file() else "")


def project(rows: list[Row], ours_train: dict[tuple, float], ours_eval: dict[str, float], wide_s: float,
            counts: dict[str, int] = PAPER_COUNTS) -> tuple[float, list[list]]:
    """Return the catalogue's projected wall seconds (no early stopping) and a table row per catalogue row.

    ours_train: training img/s per (model, freeze, knobs) (the key (model, "none", "{}") is the fallback);
    ours_eval: validation/test img/s per model, and feature-pass img/s for frozen-backbone models; wide_s: device
    seconds per image of the `wide` augmentation.
    """
    n_tr, n_va, n_te = counts["train"], counts["val"], counts["test"]
    total, prow = 0.0, []
    computed: set[tuple[str, str]] = set()  # (model, view) whose features an earlier run left in the cache
    for r in rows:
        ev = ours_eval[r.model]
        if r.freeze == "head" and r.augment in ("none", "hflip"):
            # With ImageNet weights every row and seed over a model shares its backbone, so its features are
            # computed by the first run (features.features) and read by the others; head epochs take ~0.
            need = {"plain": n_tr + n_va + n_te, "flipped": n_tr if r.augment == "hflip" else 0}
            images = sum(n for view, n in need.items() if n and (r.model, view) not in computed)
            computed |= {(r.model, view) for view, n in need.items() if n}
            total += images / ev
            prow.append([r.id, r.model, r.freeze, r.augment, "cached features" if images else "features read",
                         r.seeds, images / ev / 60])
            continue
        key = (r.model, r.freeze, repr(sorted(r.knobs.items())))
        tr = ours_train.get(key) or ours_train[(r.model, "none", "{}")]
        t = r.epochs * (n_tr / tr + n_va / ev + (n_tr * wide_s if r.augment == "wide" else 0.0)) + n_te / ev
        total += t * r.seeds
        prow.append([r.id, r.model, r.freeze, r.augment, "wide aug" if r.augment == "wide" else "full network",
                     r.seeds, t * r.seeds / 60])
    return total, prow


def run_cuda(args: argparse.Namespace) -> None:
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: torch sees no CUDA device")
        torch.backends.cudnn.benchmark = True
    s = make_setup(device, args.root, args.source_side or None)
    rows, source = catalogue()
    quick = args.quick
    w, k = (2, 3) if quick else (5, 15)
    batch = 32
    print(describe_machine(device))
    print(f"catalogue: {source}; paper data: {PAPER_COUNTS}, {rows[0].epochs if rows else 25} epochs")
    ours_train: dict[tuple, float] = {}
    ours_eval: dict[str, float] = {}
    mrows = []
    size = args.size or PAPER_SIZE
    names = [n for n in (args.models or sorted({r.model for r in rows} | set(FAMILIES))) if n in models.names()]
    try:
        for name in names:
            ref = measure_reference(s, name, size, batch, w, k, "none")
            o = measure_ours(s, name, size, batch, w, k, "none", channels_last=True, amp=True)
            o32 = measure_ours(s, name, size, batch, w, k, "none")
            with patched(train, "train_one_epoch", train_one_epoch_nosync):
                ons = measure_ours(s, name, size, batch, w, k, "none", channels_last=True, amp=True)
            pretrained = models.family(name) == "pretrained"
            ev = measure_features(s, name, size, max(features.BATCH, k * batch), amp=True) if pretrained else None
            ours_train[(name, "none", "{}")] = o["images_per_s"]
            mrows.append([name, size, ref["images_per_s"], pct(ref["data_wait_share"]), o32["images_per_s"],
                          o["images_per_s"], f"{o['images_per_s'] / ref['images_per_s']:.2f}x",
                          pct(o["data_wait_share"]), ons["images_per_s"], ev["images_per_s"] if ev else float("nan"),
                          o["cuda_peak_mb"]])
            print(f"  {name}: ref {ref['images_per_s']:.0f} img/s, ours AMP {o['images_per_s']:.0f} img/s", flush=True)
        # Every distinct (model, knobs, freeze) of the catalogue that trains through the network.
        for r in rows:
            key = (r.model, "head" if r.freeze == "head" else r.freeze, repr(sorted(r.knobs.items())))
            if r.freeze == "head" and r.augment in ("none", "hflip"):
                if r.model not in ours_eval:
                    ours_eval[r.model] = measure_features(s, r.model, r.size, max(features.BATCH, k * r.batch),
                                                          amp=True)["images_per_s"]
            elif key not in ours_train:
                ours_train[key] = measure_ours(s, r.model, r.size, r.batch, w, k, r.freeze, channels_last=True,
                                               amp=True, knobs=r.knobs)["images_per_s"]
            if r.model not in ours_eval:  # validation/test passes
                ours_eval[r.model] = measure_eval(s, r.model, r.size, r.batch, w, k, channels_last=True, amp=True,
                                                  knobs=r.knobs)["images_per_s"]
        wide = any(r.augment == "wide" for r in rows)
        wide_s = measure_wide(size, batch, 1 if quick else 3, device) if wide else 0.0
    finally:
        shutil.rmtree(s.cache_dir, ignore_errors=True)
    total, prow = project(rows, ours_train, ours_eval, wide_s)
    print(f"\n== Training images/s at {size} px, batch {batch} ({w} warm-up + {k} timed steps)")
    print(table(["model", "px", "ref fp32 img/s", "ref data wait", "ours fp32 img/s", "ours AMP img/s", "AMP/ref",
                 "ours data wait", "AMP, no per-step sync", "features img/s", "ours AMP GPU peak MB"], mrows))
    print("ours AMP = bf16 autocast + channels_last + cudnn.benchmark; reference = fp32, default memory format, "
          f"PIL + DataLoader(num_workers={os.cpu_count()}) on the embedded synthetic images (smaller than Food-101's "
          "512 px JPEGs, so real decoding costs the reference more); no per-step sync = candidate patch "
          "(bench.train_one_epoch_nosync: loss and accuracy summed on the GPU, read once per epoch)")
    print(f"\n== Projected wall time of the paper catalogue ({len(rows)} rows, up to 25 epochs, no early stopping)")
    print(table(["id", "model", "freeze", "augment", "path", "seeds", "minutes (all seeds)"], prow))
    if wide_s:
        print(f"`wide` augmentation on {device}: {1000 * wide_s:.2f} ms per image at {size} px (per image, in the "
              "training process)")
    print(f"projected_total_hours={total / 3600:.2f}")
    print_gpu_projection(prow)


def print_gpu_projection(prow: list[list]) -> None:
    """Print the catalogue's wall time on 1, 2, 4 and 8 GPUs (one run per GPU, longest run first)."""
    # A row's cached features are paid by its first seed's run; other rows cost the same for every seed.
    costs = [(minutes * 60 if k == 0 else 0.0) if path == "cached features" else minutes * 60 / seeds
             for _, _, _, _, path, seeds, minutes in prow for k in range(seeds)]
    rows = projection(costs)
    print(f"\n== The catalogue on N GPUs ({len(costs)} runs, each on one GPU, longest first; `batch` runs them in "
          "catalogue order, which may take longer)")
    print(table(["GPUs", "wall minutes", "lower bound: max(sum / N, longest run)", "GPUs busy"],
                [[n, wall / 60, bound / 60, pct(eff)] for n, wall, bound, eff in rows]))
    print(" ".join(f"projected_minutes_{n}gpu={wall / 60:.1f}" for n, wall, _, _ in rows))
