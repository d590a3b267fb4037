"""The run directory: where a run writes its parameters, metrics, result, checkpoints and predictions, and how later stages read them."""

from __future__ import annotations

import csv
import io
import json
import logging
import types
import typing
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

from .. import params as params_mod
from ..atomic import atomic_write_bytes, atomic_write_text

log = logging.getLogger(__name__)

PARAMS = "params.yaml"
METRICS = "metrics.csv"
RESULT = "result.json"
BEST = "best.pt"
LAST = "last.pt"
PREDICTIONS = "predictions.npz"
NOTEBOOK = "notebook.ipynb"
ERROR = "error.txt"

FINISHED = ("ok", "diverged")  # statuses of a run that needs no re-run
METRIC_COLUMNS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "seconds"]


def run_dir(p: params_mod.Params, out: str | Path | None = None) -> Path:
    """Return the directory of a run: <runs_dir>/<profile>/<id>/seed<seed> unless `out` names one."""
    if out is not None:
        return Path(out)
    return Path(p.runs_dir) / (p.profile or "adhoc") / p.id / f"seed{p.seed}"


class ResultError(ValueError):
    """result.json exists but is damaged, or was edited into something a run never writes."""


class Result(TypedDict, total=False):
    """What a run's result.json holds (training.train writes it): the one place that says so.

    Readers need "status" and read the others where present; load_result checks each present key against the type
    declared here (RESULT_TYPES is read from this class).
    """

    status: str  # "ok" or "diverged" (FINISHED)
    id: str
    seed: int
    profile: str
    fingerprint: str  # Params.fingerprint(): a finished run of the same parameters is not trained again
    recipe_fingerprint: str  # the same without the id: rows that are one experiment (find_twin)
    same_run_as: str  # set when this row adopted another row's run
    model: str
    image_size: int
    weights_source: str
    freeze: str
    pretrained_imagenet: bool
    recipe: dict | None  # how a pretrained backbone was fine-tuned (training/finetune.py); None: none was
    feature_cache: bool
    features_from_disk: list
    device: str
    deterministic: bool
    versions: dict
    params_total: int
    params_trainable: int
    data: dict  # provenance of the images (data.subsets.Subset.provenance)
    bad_images: list
    bad_image_count: int
    epochs_run: int
    best_epoch: int | None
    stopped_early: bool
    diverged_epoch: int | None
    resumed_from_epoch: int | None
    train_images_per_s: float | None
    train_loss: float | None
    train_acc: float | None
    val_loss: float | None
    val_acc: float | None
    test_loss: float | None
    test_acc: float | None
    wall_time_s: float


def _json_types(hint: Any) -> tuple[type, ...]:
    """Return the Python types a JSON value of a Result field may have (a float may be written as an int)."""
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    out: list[type] = []
    for a in args:
        out += [int, float] if a is float else [typing.get_origin(a) or a]
    return tuple(out)


REQUIRED_RESULT_KEYS = ("status",)
RESULT_TYPES: dict[str, tuple[type, ...]] = {k: _json_types(h) for k, h in typing.get_type_hints(Result).items()}
ACCURACIES = ("train_acc", "val_acc", "test_acc")


def load_result(path: str | Path) -> dict[str, Any] | None:
    """Return result.json of a run directory, None when there is none; raise ResultError when it is damaged."""
    f = Path(path) / RESULT  # exactly this name: a killed write's ".result.json.*.tmp" is never read
    if not f.is_file():
        return None
    try:
        r = json.loads(f.read_bytes().decode("utf-8"))
    except ValueError as e:  # not JSON, not UTF-8
        raise ResultError(f"{f} is damaged ({type(e).__name__}: {e})") from None
    if not isinstance(r, dict):
        raise ResultError(f"{f} holds a {type(r).__name__}, not a run's result (a mapping)")
    for key in REQUIRED_RESULT_KEYS:
        if key not in r:
            raise ResultError(f"{f}: key '{key}' is missing; every finished run writes it")
    for key, allowed in RESULT_TYPES.items():
        if key not in r:
            continue
        v = r[key]
        if not isinstance(v, allowed) or (isinstance(v, bool) and bool not in allowed):
            names = " or ".join("null" if t is type(None) else t.__name__ for t in allowed)
            raise ResultError(f"{f}: key '{key}' is {v!r}; a run writes {names} there")
    if r["status"] not in FINISHED:
        raise ResultError(f"{f}: key 'status' is {r['status']!r}; a run writes one of {', '.join(FINISHED)}")
    for key in ACCURACIES:
        if r.get(key) is not None and not 0 <= r[key] <= 1:
            raise ResultError(f"{f}: key '{key}' is {r[key]!r}; accuracies are fractions from 0 to 1 (0.552 for 55.2 %)")
    return r


def read_result(path: str | Path) -> dict[str, Any] | None:
    """Return result.json of a run directory, or None when the run has not finished or its result is damaged."""
    try:
        return load_result(path)
    except ResultError:
        return None


def write_result(path: str | Path, result: dict[str, Any]) -> None:
    """Write result.json atomically (it is the last file a run writes)."""
    atomic_write_text(Path(path) / RESULT, json.dumps(result, indent=2, default=str))


def write_metrics(path: str | Path, rows: list[dict[str, float]]) -> None:
    """Write the per-epoch metrics (one row per epoch, METRIC_COLUMNS) to metrics.csv atomically."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=METRIC_COLUMNS)
    w.writeheader()
    for r in rows:
        w.writerow({k: r[k] for k in METRIC_COLUMNS})
    atomic_write_text(Path(path) / METRICS, buf.getvalue())


def write_predictions(path: str | Path, keys: list[str], ev: dict[str, Any]) -> None:
    """Write per-image test predictions (see Run.predictions) to predictions.npz atomically."""
    buf = io.BytesIO()
    np.savez_compressed(buf, keys=np.array(keys), y_true=ev["y"].astype(np.int16), y_pred=ev["pred"].astype(np.int16),
                        loss=ev["losses"].astype(np.float32), prob=ev["prob"].astype(np.float16))
    atomic_write_bytes(Path(path) / PREDICTIONS, buf.getvalue())


def is_finished(path: str | Path, p: params_mod.Params | None = None) -> bool:
    """Return True when the run finished (ok or diverged) and, if `p` is given, with the same parameters."""
    r = read_result(path)
    if r is None or r.get("status") not in FINISHED:
        return False
    return p is None or r.get("fingerprint") == p.fingerprint()


def changed_params(rdir: str | Path, p: params_mod.Params) -> list[str]:
    """Return "key: old -> new" for each result-determining parameter where the run in `rdir` differs from `p`."""
    import yaml

    try:
        old = yaml.safe_load((Path(rdir) / PARAMS).read_text()) or {}
    except (OSError, yaml.YAMLError):
        return [f"{PARAMS} unreadable"]
    new = p.to_dict()
    keys = [k for k in new if k not in params_mod.NON_RESULT_FIELDS and k not in ("seed",)] + ["seed"]
    return [f"{k}: {old.get(k, '(unset)')!r} -> {new[k]!r}" for k in keys if old.get(k, params_mod.FIELDS[k].default) != new[k]]


def list_runs(root: str | Path) -> list[Path]:
    """Return every run directory (one with params.yaml) under `root`, sorted; a re-run's staging is not a run."""
    root = Path(root)
    return sorted(f.parent for f in root.rglob(PARAMS)
                  if not any(part.startswith(".") for part in f.parent.relative_to(root).parts))


# --------------------------------------------------------------------------- rows that are the same experiment
# Two catalogue rows can be one experiment under two names (a_baseline and b_baseline: both reports' baseline,
# identical but for the id). The second to run adopts the first's finished run of the same seed instead of
# training the same network again; its result names the run it came from ("same_run_as").


def find_twin(rdir: Path, p: params_mod.Params) -> Path | None:
    """Return a finished run of another row with the same recipe and seed in the same profile, or None."""
    want = p.recipe_fingerprint()
    for other in sorted(rdir.parent.parent.glob(f"*/{rdir.name}")):
        if other == rdir:
            continue
        r = read_result(other)
        if r is not None and r.get("status") in FINISHED and r.get("recipe_fingerprint") == want \
                and (other / PREDICTIONS).is_file():
            return other
    return None


def adopt_twin(twin: Path, rdir: Path, p: params_mod.Params) -> dict[str, Any]:
    """Copy the twin run's files into `rdir` as this row's run (result.json last); return the result."""
    import shutil

    rdir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(rdir / PARAMS, params_mod.dump(p))
    for name in (METRICS, BEST, PREDICTIONS):
        if (twin / name).is_file():
            tmp = rdir / f".{name}.adopt.tmp"
            shutil.copyfile(twin / name, tmp)
            tmp.replace(rdir / name)
    result = {**load_result(twin), "id": p.id, "fingerprint": p.fingerprint(), "same_run_as": twin.parent.name}
    write_result(rdir, result)
    log.info("%s seed %d: the same experiment as %s (equal parameters but the id); its run adopted", p.id, p.seed,
             twin.parent.name)
    return result


# --------------------------------------------------------------------------- re-running a finished run
# A run that replaces a finished one (--rerun, or a batch whose parameters changed) trains in a staging
# directory beside it, ".<name>.rerun", and takes its place only when its result is complete: until then the old
# result stays readable, whatever stops the new run (Ctrl-C, SIGTERM, SIGKILL, a crash). The swap is two renames
# (old aside to ".<name>.replaced", new in place); a stop between them is repaired by the next run or reader
# (recover_swap).


def staging_dir(rdir: str | Path) -> Path:
    """Return where a run that replaces the finished run in `rdir` trains."""
    rdir = Path(rdir)
    return rdir.with_name(f".{rdir.name}.rerun")


def _replaced_dir(rdir: Path) -> Path:
    return rdir.with_name(f".{rdir.name}.replaced")


def recover_swap(rdir: str | Path) -> None:
    """Finish or undo a swap that a stop interrupted, so `rdir` holds a complete run again."""
    rdir = Path(rdir)
    old = _replaced_dir(rdir)
    if not old.exists():
        return
    if rdir.exists():  # the new run is in place: the old one was only waiting to be deleted
        import shutil

        shutil.rmtree(old, ignore_errors=True)
    else:  # stopped between the two renames: the old run goes back until the new one is complete
        old.rename(rdir)
        log.warning("%s: an interrupted re-run's swap was undone; the earlier finished run is back", rdir)


def swap_in(staged: Path, rdir: Path) -> None:
    """Put the complete run in `staged` in place of the finished run in `rdir`, then delete the old one."""
    import shutil

    old = _replaced_dir(rdir)
    shutil.rmtree(old, ignore_errors=True)
    rdir.rename(old)
    staged.rename(rdir)
    shutil.rmtree(old, ignore_errors=True)


@dataclass
class Run:
    """A run directory opened for reading."""

    path: Path

    @cached_property
    def params(self) -> params_mod.Params:
        """Return the run's resolved parameters."""
        return params_mod.from_mapping(params_mod.read_yaml(self.path / PARAMS), source=str(self.path / PARAMS))

    @property
    def result(self) -> dict[str, Any] | None:
        """Return result.json, or None while the run is unfinished."""
        return read_result(self.path)

    @property
    def metrics(self) -> "Any":
        """Return the per-epoch metrics as a pandas DataFrame (empty before the first epoch)."""
        import pandas as pd

        f = self.path / METRICS
        if not f.is_file():
            return pd.DataFrame(columns=METRIC_COLUMNS)
        try:
            df = pd.read_csv(f)
            missing = [c for c in METRIC_COLUMNS if c not in df.columns]
            if missing:
                raise ValueError(f"no column {', '.join(missing)}")
            df[METRIC_COLUMNS].apply(pd.to_numeric)  # a hand-edited word fails here, not in a plot
        except ValueError as e:  # not CSV, not UTF-8, empty, edited
            log.warning("%s is damaged (%s); the run's curves are left out", f, e)
            return pd.DataFrame(columns=METRIC_COLUMNS)
        return df

    @property
    def predictions(self) -> dict[str, np.ndarray]:
        """Return per-image test predictions: keys, y_true, y_pred, loss, prob (float16 N x C)."""
        with np.load(self.path / PREDICTIONS, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    def model(self, checkpoint: str = BEST) -> "Any":
        """Return the model with the checkpoint's weights loaded, in eval mode, on the CPU."""
        from .. import checkpoints
        from ..models import registry

        import itertools

        import torch

        p = self.params.replace(pretrained="none")  # the checkpoint holds every weight
        state = checkpoints.load(self.path / checkpoint)["model"]
        # Built on the meta device, the weights are not initialised only to be overwritten (VGG16 has 134 M of
        # them). Anything the checkpoint does not hold would stay on "meta": then build for real.
        with torch.device("meta"):
            model = registry.build_from_params(p)
        model.load_state_dict(state, assign=True)
        if any(t.is_meta for t in itertools.chain(model.parameters(), model.buffers())):
            model = registry.build_from_params(p)
            model.load_state_dict(state)
        return model.eval()


def open_run(path: str | Path) -> Run:
    """Return a Run for a run directory, with a clear error when it is not one."""
    path = Path(path)
    if not (path / PARAMS).is_file():
        raise FileNotFoundError(f"{path} is not a run directory (no {PARAMS}); runs are written by `python -m foodcnn run`")
    return Run(path)
