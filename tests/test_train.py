"""Training: loss goes down, early stopping, the run directory, cached frozen features, divergence, resume, determinism."""

from __future__ import annotations

import json
import os
import signal

import pandas as pd
import pytest
import torch

from foodcnn import checkpoints
from foodcnn.results import runs
from foodcnn.training import epochs, train


def test_tiny_run_lowers_loss_and_writes_run_directory(tiny_params):
    p = tiny_params(epochs=4, lr=3e-3)
    train.run(p)
    rdir = runs.run_dir(p)
    for name in (runs.PARAMS, runs.METRICS, runs.RESULT, runs.BEST, runs.PREDICTIONS):
        assert (rdir / name).is_file(), name
    assert not (rdir / runs.LAST).exists()  # only kept while a run is unfinished
    m = pd.read_csv(rdir / runs.METRICS)
    assert list(m.columns) == runs.METRIC_COLUMNS and len(m) == 4
    assert m.train_loss.iloc[-1] < m.train_loss.iloc[0]
    saved = json.loads((rdir / runs.RESULT).read_text())
    for key in ("train_acc", "val_acc", "test_acc", "test_loss", "best_epoch", "wall_time_s", "train_images_per_s",
                "params_total", "params_trainable", "data", "versions", "device", "seed"):
        assert saved[key] is not None, key
    assert saved["data"]["synthetic"] is True and saved["data"]["counts"]["test"] == 40
    assert saved["best_epoch"] == int(m.val_loss.idxmin()) + 1
    assert saved["val_acc"] == pytest.approx(m.val_acc[saved["best_epoch"] - 1])
    preds = runs.open_run(rdir).predictions
    assert preds["y_true"].shape == preds["y_pred"].shape == (40,)
    assert saved["test_acc"] == pytest.approx((preds["y_true"] == preds["y_pred"]).mean())
    assert runs.is_finished(rdir, p) and not runs.is_finished(rdir, p.replace(lr=1e-2))


def test_early_stopping_stops_and_keeps_best_epoch(tiny_params, monkeypatch):
    real = epochs.evaluate
    val_losses = iter([1.0, 0.8, 0.9, 1.1, 1.2, 1.3, 1.4, 1.5])

    def fake_evaluate(net, stream, device, amp):
        out = real(net, stream, device, amp)
        if len(stream) == 16:  # the validation split of the tiny data (4 classes x 4)
            out["loss"] = next(val_losses)
        return out

    monkeypatch.setattr(epochs, "evaluate", fake_evaluate)
    result = train.run(tiny_params(epochs=8, patience=2))
    assert result["best_epoch"] == 2 and result["epochs_run"] == 4 and result["stopped_early"]


def test_divergence_stops_with_status_and_keeps_best(tiny_params, monkeypatch):
    real = epochs.F.cross_entropy
    calls = {"n": 0}

    def nan_after_a_while(logits, y, **kw):
        calls["n"] += 1
        loss = real(logits, y, **kw)
        return loss * float("nan") if calls["n"] > 12 and kw.get("reduction") is None else loss

    monkeypatch.setattr(epochs.F, "cross_entropy", nan_after_a_while)
    p = tiny_params(epochs=5)
    result = train.run(p)
    assert result["status"] == "diverged" and result["diverged_epoch"] >= 2
    assert result["best_epoch"] is not None and result["test_acc"] is not None
    assert runs.is_finished(runs.run_dir(p), p)  # a diverged run is finished: the batch goes on


def test_same_seed_same_metrics_on_cpu(tiny_params):
    a = train.run(tiny_params(epochs=2, augment="wide", runs_dir=str(tiny_params().runs_dir) + "/a"))
    b = train.run(tiny_params(epochs=2, augment="wide", runs_dir=str(tiny_params().runs_dir) + "/b"))
    for key in ("train_loss", "val_loss", "test_loss", "test_acc"):
        assert a[key] == b[key], key
    assert a["versions"]["torch"] == torch.__version__ and a["device"] == "cpu"


def test_resume_after_interruption_equals_uninterrupted(tiny_params, monkeypatch):
    full = train.run(tiny_params(epochs=3, augment="hflip", runs_dir=str(tiny_params().runs_dir) + "/full"))
    p = tiny_params(epochs=3, augment="hflip", runs_dir=str(tiny_params().runs_dir) + "/cut", checkpoint_every_s=0)
    real = epochs.train_one_epoch
    calls = {"n": 0}

    def dies_in_epoch_3(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # stands for a kill in the middle of an epoch
        return real(*a, **kw)

    monkeypatch.setattr(epochs, "train_one_epoch", dies_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        train.run(p)
    rdir = runs.run_dir(p)
    assert not (rdir / runs.RESULT).exists() and (rdir / runs.LAST).is_file()
    assert checkpoints.load(rdir / runs.LAST)["epoch"] == 2
    monkeypatch.setattr(epochs, "train_one_epoch", real)
    resumed = train.run(p, resume=True)
    assert resumed["resumed_from_epoch"] == 2
    for key in ("train_loss", "val_loss", "test_loss", "test_acc", "best_epoch"):
        assert resumed[key] == full[key], key
    assert len(pd.read_csv(rdir / runs.METRICS)) == 3


def _signalled_in_epoch(epoch: int, signals: int, monkeypatch) -> None:
    """Make train_one_epoch receive `signals` Ctrl-C (SIGINT) at the start of `epoch`."""
    real, calls = epochs.train_one_epoch, {"n": 0}

    def epoch_fn(*a, **kw):
        calls["n"] += 1
        for _ in range(signals if calls["n"] == epoch else 0):
            os.kill(os.getpid(), signal.SIGINT)
        return real(*a, **kw)

    monkeypatch.setattr(epochs, "train_one_epoch", epoch_fn)


def test_ctrl_c_finishes_the_epoch_checkpoints_it_and_resume_equals_uninterrupted(tiny_params, monkeypatch):
    root = str(tiny_params().runs_dir)
    full = train.run(tiny_params(epochs=5, runs_dir=root + "/full"))
    p = tiny_params(epochs=5, runs_dir=root + "/cut")  # last.pt every 300 s: never due in these epochs
    handler = signal.getsignal(signal.SIGINT)
    with monkeypatch.context() as m:
        _signalled_in_epoch(3, 1, m)
        with pytest.raises(KeyboardInterrupt):
            train.run(p)
    rdir = runs.run_dir(p)
    assert checkpoints.load(rdir / runs.LAST)["epoch"] == 3 and len(pd.read_csv(rdir / runs.METRICS)) == 3
    assert not (rdir / runs.RESULT).exists() and not (rdir / runs.BEST).exists()
    assert signal.getsignal(signal.SIGINT) is handler  # put back
    resumed = train.run(p, resume=True)
    assert resumed["resumed_from_epoch"] == 3
    for key in ("train_loss", "val_loss", "test_loss", "test_acc", "best_epoch"):
        assert resumed[key] == full[key], key

    # A second Ctrl-C stops at once: the epoch in progress and everything since the last checkpoint are lost.
    q = tiny_params(epochs=5, runs_dir=root + "/twice")
    with monkeypatch.context() as m:
        _signalled_in_epoch(3, 2, m)
        with pytest.raises(KeyboardInterrupt):
            train.run(q)
    assert not (runs.run_dir(q) / runs.LAST).exists()


def test_best_pt_holds_the_best_epochs_weights_written_once(tiny_params, monkeypatch):
    real_eval, real_epoch, real_save = epochs.evaluate, epochs.train_one_epoch, checkpoints.save
    val_losses = iter([1.0, 0.8, 0.9, 1.1])
    after_epoch, saves = [], []

    def fake_evaluate(net, stream, device, amp):
        out = real_eval(net, stream, device, amp)
        if len(stream) == 16:  # the validation split of the tiny data (4 classes x 4)
            out["loss"] = next(val_losses)
        return out

    def recorded_epoch(net, *a, **kw):
        out = real_epoch(net, *a, **kw)
        after_epoch.append({k: v.clone() for k, v in net.state_dict().items()})
        return out

    monkeypatch.setattr(epochs, "evaluate", fake_evaluate)
    monkeypatch.setattr(epochs, "train_one_epoch", recorded_epoch)
    monkeypatch.setattr(checkpoints, "save", lambda path, **kw: (saves.append(path.name), real_save(path, **kw)))
    p = tiny_params(epochs=4)
    result = train.run(p)
    best = checkpoints.load(runs.run_dir(p) / runs.BEST)
    assert result["best_epoch"] == best["epoch"] == 2 and saves == [runs.BEST]
    assert best["model"].keys() == after_epoch[1].keys()
    assert all(torch.equal(best["model"][k], after_epoch[1][k]) for k in best["model"])
    assert not all(torch.equal(best["model"][k], after_epoch[3][k]) for k in best["model"])


def test_last_pt_is_due_once_every_interval(tmp_path, monkeypatch):
    now = [0.0]
    monkeypatch.setattr(checkpoints.Keeper, "clock", staticmethod(lambda: now[0]))
    net = torch.nn.Linear(2, 2)
    keeper = checkpoints.Keeper(tmp_path / "last.pt", tmp_path / "best.pt", checkpoints.whole(net),
                                torch.optim.Adam(net.parameters()), "f", every_s=10)
    due = []
    for epoch, t in enumerate((4, 9, 10, 14, 19.5, 20), start=1):
        now[0] = t
        due.append(keeper.due())
        if due[-1]:
            keeper.commit(checkpoints.Progress(epoch=epoch))
    assert due == [False, False, True, False, False, True]
    assert checkpoints.load(tmp_path / "last.pt")["epoch"] == 6


@pytest.mark.parametrize("augment", ["none", "hflip"])
def test_cached_frozen_features_match_plain_run(tiny_params, augment):
    kw = dict(model="resnet18", freeze="head", image_size=32, epochs=2, augment=augment, lr=1e-2)
    cached = train.run(tiny_params(feature_cache=True, runs_dir=str(tiny_params().runs_dir) + "/c", **kw))
    plain = train.run(tiny_params(feature_cache=False, runs_dir=str(tiny_params().runs_dir) + "/p", **kw))
    assert cached["feature_cache"] and not plain["feature_cache"]
    for key in ("train_loss", "val_loss", "test_loss"):
        assert cached[key] == pytest.approx(plain[key], rel=1e-4, abs=1e-5), key
    assert cached["test_acc"] == pytest.approx(plain["test_acc"], abs=1 / 40 + 1e-9)
