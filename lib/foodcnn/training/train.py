"""Training one run, step by step: device and seeds, resume state, the run directory, fit with early stopping,
the best epoch tested, the result written."""

from __future__ import annotations

import logging
import math
import os
import platform
import random
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import checkpoints
from ..atomic import atomic_write_text, remove_temps
from ..data import subsets
from ..models import registry
from ..params import Params, ParamsError, dump
from ..results import runs
from . import allocator, epochs, finetune
from .streams import Loaded, Streams, load_data, make_streams, trained_part

log = logging.getLogger(__name__)


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed torch, random and NumPy; switch torch's deterministic kernels on or off as asked."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS (read before its first use)
        torch.backends.cudnn.benchmark = False
    # Set both ways: a run in the same process after a deterministic one must not inherit the setting. Not
    # warn_only: a run that asked for determinism stops at an op that has none, and torch's error names the op.
    torch.use_deterministic_algorithms(deterministic)


def resolve_device(name: str) -> torch.device:
    """Return the torch device for "auto" | "cpu" | "cuda"."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ParamsError("key 'device': cuda was asked for but torch sees no CUDA device; use device: auto or cpu")
    return torch.device(name)


def versions() -> dict[str, str]:
    """Return the versions a run records."""
    from importlib.metadata import version  # not `import torchvision`: it costs seconds

    from .. import __version__

    return {"python": platform.python_version(), "torch": torch.__version__, "torchvision": version("torchvision"),
            "numpy": np.__version__, "foodcnn": __version__}


def _epoch_seed(seed: int, epoch: int) -> int:
    # Each epoch draws from its own seed, so a resumed run repeats exactly what an uninterrupted one does.
    return (seed * 1_000_003 + epoch * 7919) % (2**63 - 1)


class Interrupts:
    """Within the block, Ctrl-C or SIGTERM asks the epoch loop to stop after its epoch (checkpointed); a second stops at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self._old: dict[int, Any] = {}

    def _ask(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        log.warning("%s: finishing this epoch to checkpoint it (send it again to stop at once, losing the epoch)",
                    signal.Signals(signum).name)

    def __enter__(self) -> "Interrupts":
        if threading.current_thread() is threading.main_thread():  # only the main thread may set handlers
            self._old = {sig: signal.signal(sig, self._ask) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)


def set_up_device(p: Params) -> torch.device:
    """Seed everything and return the run's device, set up for speed where that changes no result."""
    device = resolve_device(p.device)
    seed_everything(p.seed, p.deterministic)
    if device.type == "cpu":
        allocator.keep_freed_memory()  # each step reuses its pages instead of faulting them in anew (allocator.py)
    if device.type == "cuda" and not p.deterministic:
        torch.backends.cudnn.benchmark = True
    return device


def prepare_run_dir(rdir: Path, p: Params, fresh: bool) -> None:
    """Create the run directory, clear what killed writes left (and, on a fresh start, every earlier output)."""
    rdir.mkdir(parents=True, exist_ok=True)
    for tmp in remove_temps(rdir):  # a killed write leaves only ".<name>.<random>.tmp"; never read, cleared here
        log.info("removed %s left by an interrupted write", tmp.name)
    if fresh:  # nothing stale may be read as this run's output
        for name in (runs.RESULT, runs.METRICS, runs.BEST, runs.LAST, runs.PREDICTIONS, runs.ERROR):
            (rdir / name).unlink(missing_ok=True)
    atomic_write_text(rdir / runs.PARAMS, dump(p))


@dataclass
class Session:
    """One run being trained: its parameters, where it writes, the model, its inputs and its checkpoint keeper."""

    p: Params
    rdir: Path  # where this run writes (a staging directory while it replaces a finished run)
    model: nn.Module
    streams: Streams
    keeper: checkpoints.Keeper
    loaded: Loaded
    device: torch.device


@dataclass
class Fitted:
    """How the epoch loop ended."""

    progress: checkpoints.Progress
    status: str = "ok"
    diverged_epoch: int | None = None
    train_images: int = 0
    train_seconds: float = 0.0


def fit(run: Session, progress: checkpoints.Progress, stop: Interrupts) -> Fitted:
    """Train from the epoch after `progress` with early stopping; keep the best weights; checkpoint as the keeper says."""
    from tqdm.auto import tqdm

    p, s, keeper, device, rdir = run.p, run.streams, run.keeper, run.device, run.rdir

    out = Fitted(progress)
    schedule = epochs.lr_factor(p.schedule, p.warmup_epochs, p.epochs)
    epochs_bar = tqdm(range(progress.epoch + 1, p.epochs + 1), desc=f"{p.id} seed {p.seed}", disable=not p.progress,
                      initial=progress.epoch, total=p.epochs)
    for epoch in epochs_bar:
        if progress.bad_epochs >= p.patience:
            break
        es = _epoch_seed(p.seed, epoch)
        torch.manual_seed(es)  # dropout and friends
        g = torch.Generator().manual_seed(es)
        registry.set_train_mode(s.net, True)
        tr = epochs.train_one_epoch(s.net, s.train, keeper.optimizer, g, device, p.amp, p.progress, f"epoch {epoch}",
                                    schedule, epoch)
        if not math.isfinite(tr["loss"]):
            out.status, out.diverged_epoch = "diverged", epoch
            log.warning("%s: loss became NaN/inf in epoch %d; stopping (%s)", p.id, epoch,
                        f"best epoch {progress.best_epoch} kept" if progress.best_epoch else "no epoch finished")
            break
        out.train_images += tr["images"]
        out.train_seconds += tr["seconds"]
        registry.set_train_mode(s.net, False)
        ev = epochs.evaluate(s.net, s.val, device, p.amp)
        progress.rows.append({"epoch": epoch, "train_loss": tr["loss"], "train_acc": tr["acc"],
                              "val_loss": ev["loss"], "val_acc": ev["acc"], "seconds": tr["seconds"]})
        progress.epoch = epoch
        if not math.isfinite(ev["loss"]):
            out.status, out.diverged_epoch = "diverged", epoch
            break
        if ev["loss"] < progress.best_val_loss:
            progress.best_val_loss, progress.best_epoch, progress.bad_epochs = ev["loss"], epoch, 0
            keeper.keep_best()
        else:
            progress.bad_epochs += 1
        if stop.requested or keeper.due():
            keeper.commit(progress)  # last.pt holds the rows too: metrics.csv may lag behind it, never lead
            runs.write_metrics(rdir, progress.rows)
        epochs_bar.set_postfix(train_acc=f"{tr['acc']:.3f}", val_acc=f"{ev['acc']:.3f}", val_loss=f"{ev['loss']:.3f}")
        if not p.progress:  # no bars (a log file, CI, a quiet notebook): one line per epoch
            log.info("%s seed %d epoch %d/%d: train loss %.3f acc %.3f, val loss %.3f acc %.3f", p.id, p.seed, epoch,
                     p.epochs, tr["loss"], tr["acc"], ev["loss"], ev["acc"])
        if stop.requested:
            raise KeyboardInterrupt
    epochs_bar.close()
    runs.write_metrics(rdir, progress.rows)
    return out


def run(p: Params, out: str | Path | None = None, resume: bool = False) -> runs.Result:
    """Train and test one run described by `p`; write its run directory; return the result mapping."""
    t_start = time.perf_counter()
    final = runs.run_dir(p, out)
    runs.recover_swap(final)
    # A run that replaces a finished one trains beside it and takes its place when complete (runs.staging_dir).
    rdir = runs.staging_dir(final) if (final / runs.RESULT).is_file() else final
    # not where a run has begun (its last.pt): the batch's notebooks always ask to resume
    twin = runs.find_twin(final, p) if out is None and rdir == final and not (rdir / runs.LAST).is_file() else None
    if twin is not None:
        return runs.adopt_twin(twin, final, p)
    device = set_up_device(p)

    # Everything that can reject the inputs (classes, last.pt, unreadable images with bad_images: fail)
    # runs before the run directory is touched, so a refused run leaves nothing behind.
    subset = subsets.subset_of(p)
    model = registry.build_from_params(p).to(device)
    if p.deterministic and device.type == "cuda":
        registry.deterministic_pooling(model)  # CUDA's adaptive average pool has no deterministic backward
    trained = trained_part(p, model)
    last_path = rdir / runs.LAST
    state = checkpoints.resumable(last_path, p.fingerprint(), trained) if resume and last_path.is_file() else None
    loaded = load_data(p, subset)
    prepare_run_dir(rdir, p, fresh=state is None)

    recipe = finetune.recipe(p, model)
    if recipe.head_first and state is None:  # a resumed run's last.pt already holds the warmed head
        recipe.head = finetune.warm_head(p, model, loaded, device)
    streams = make_streams(p, model, trained, loaded, device)
    optimizer = epochs.make_optimizer(model, p.lr, device, recipe.backbone_lr_scale)
    keeper = checkpoints.Keeper(last_path, rdir / runs.BEST, trained, optimizer, p.fingerprint(), p.checkpoint_every_s)
    progress = checkpoints.Progress()
    if state is not None:
        progress = keeper.restore(state)
        log.info("resuming %s after epoch %d", p.id, progress.epoch)
    session = Session(p, rdir, model, streams, keeper, loaded, device)
    with Interrupts() as stop:
        fitted = fit(session, progress, stop)
        result = finish(session, fitted, resumed_from=state["epoch"] if state is not None else None)
        result["recipe"] = recipe.describe()
        result["wall_time_s"] = time.perf_counter() - t_start
        runs.write_result(rdir, result)  # written last: its presence means the run is complete
        last_path.unlink(missing_ok=True)  # only needed to resume an unfinished run
        if rdir != final:
            runs.swap_in(rdir, final)
    if stop.requested:  # asked to stop after the last epoch: the run finished, and the caller still stops
        raise KeyboardInterrupt
    return result


def finish(run: Session, fitted: Fitted, resumed_from: int | None) -> runs.Result:
    """Test the best epoch's weights (written to best.pt) and return the result (but recipe and wall time)."""
    p, rdir, model, s, keeper, loaded, device = (run.p, run.rdir, run.model, run.streams, run.keeper, run.loaded,
                                                 run.device)
    rows, best_epoch = fitted.progress.rows, fitted.progress.best_epoch
    total, trainable = registry.count_parameters(model)
    result: runs.Result = {
        "status": fitted.status, "id": p.id, "seed": p.seed, "profile": p.profile, "fingerprint": p.fingerprint(),
        "recipe_fingerprint": p.recipe_fingerprint(),
        "model": p.model, "image_size": p.resolved_image_size, "weights_source": model.weights_source,
        "freeze": model.freeze, "pretrained_imagenet": str(model.weights_source).startswith("ImageNet"),
        "feature_cache": keeper.trained.scope == "head", "features_from_disk": s.from_disk, "device": str(device),
        "deterministic": p.deterministic, "versions": versions(),
        "params_total": total, "params_trainable": trainable, "data": loaded.subset.provenance(),
        "bad_images": loaded.bad, "bad_image_count": len(loaded.bad),
        "epochs_run": len(rows), "best_epoch": best_epoch or None,
        "stopped_early": len(rows) < p.epochs and fitted.status == "ok",
        "diverged_epoch": fitted.diverged_epoch, "resumed_from_epoch": resumed_from,
        "train_images_per_s": fitted.train_images / fitted.train_seconds if fitted.train_seconds else None,
    }
    best_row = next((r for r in rows if r["epoch"] == best_epoch), None)
    if best_row is None:
        result.update(train_loss=None, train_acc=None, val_loss=None, val_acc=None, test_loss=None, test_acc=None)
        return result
    result.update(train_loss=best_row["train_loss"], train_acc=best_row["train_acc"],
                  val_loss=best_row["val_loss"], val_acc=best_row["val_acc"])
    keeper.use_best(best_epoch)
    registry.set_train_mode(s.net, False)
    ev = epochs.evaluate(s.net, s.test, device, p.amp)
    result.update(test_loss=ev["loss"], test_acc=ev["acc"])
    runs.write_predictions(rdir, loaded.test.keys, ev)
    return result


def describe(result: dict[str, Any]) -> str:
    """Return a one-line human summary of a result."""
    if result.get("test_acc") is None:
        return f"{result['id']} seed {result['seed']}: {result['status']} before any epoch finished"
    return (f"{result['id']} seed {result['seed']}: {result['status']}, best epoch {result['best_epoch']}, "
            f"train {100 * result['train_acc']:.1f}% val {100 * result['val_acc']:.1f}% "
            f"test {100 * result['test_acc']:.2f}% (loss {result['test_loss']:.3f}), {result['wall_time_s']:.0f}s")
