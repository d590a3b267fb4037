"""Nothing lost, nothing confusing: bad images, bad parameters, a real SIGKILL, divergence, determinism, unsafe checkpoints."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from conftest import write_food101
from foodcnn.pipeline import cli
from foodcnn import checkpoints
from foodcnn.data import subsets
from foodcnn.models import registry
from foodcnn import params
from foodcnn.results import runs
from foodcnn.training import train

COMPARED = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "best_epoch", "epochs_run")


def _params_file(path, **kw):
    """Write an experiment YAML for the tiny CPU setup and return its path."""
    base = dict(model="baseline", num_classes=4, image_size=20, batch_size=16, progress=False, pretrained="none",
                device="cpu")
    path.write_text(yaml.safe_dump({**base, **kw}))
    return path


def _cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "foodcnn", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=900)  # generous: the test machines are shared


def _metrics(rdir) -> pd.DataFrame:
    return pd.read_csv(rdir / runs.METRICS).drop(columns="seconds")


def _faults(base) -> dict[str, str]:
    """Turn some images of a generated tree (train and test) into odd or broken files; return key -> fault of the unreadable."""
    meta = {s: json.loads((base / "meta" / f"{s}.json").read_text()) for s in ("train", "test")}
    rgb = np.random.default_rng(1).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    jpeg = io.BytesIO()
    Image.fromarray(rgb).save(jpeg, format="JPEG", quality=90)
    makers = {
        "truncated": lambda f: f.write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2]),
        "empty": lambda f: f.write_bytes(b""),
        "not an image": lambda f: f.write_text("<html>404 not found</html>\n"),
        "png": lambda f: Image.fromarray(rgb).save(f, format="PNG"),
        "grayscale": lambda f: Image.fromarray(rgb[..., 0]).save(f, format="JPEG"),
        "cmyk": lambda f: Image.fromarray(rgb).convert("CMYK").save(f, format="JPEG"),
        "16-bit": lambda f: Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(f, format="PNG"),
        "palette": lambda f: Image.fromarray(rgb).convert("P").save(f, format="PNG"),
    }
    bad = {}
    for split in ("train", "test"):
        for key, (fault, make) in zip(meta[split]["a"], makers.items()):
            make(base / "images" / f"{key}.jpg")
            if fault in ("truncated", "empty", "not an image"):
                bad[key] = fault
    return bad


def test_bad_images_are_converted_or_skipped_and_named(tmp_path, tiny_params):
    base = write_food101(tmp_path / "data", ["a", "b"], n_train=12, n_test=10)
    bad = _faults(base)
    p = tiny_params(data_root=str(base), num_classes=2, epochs=1)
    result = train.run(p)
    assert result["status"] == "ok" and result["test_acc"] is not None  # nothing crashed mid-epoch
    saved = runs.read_result(runs.run_dir(p))
    assert saved["bad_image_count"] == 6 and {b["key"]: b["path"] for b in saved["bad_images"]} == {
        k: str(base / "images" / f"{k}.jpg") for k in bad}
    errors = {b["key"]: b["error"] for b in saved["bad_images"]}
    assert all(("truncated" if bad[k] == "truncated" else "cannot identify") in errors[k] for k in bad), errors
    # every readable odd image (PNG named .jpg, grayscale, CMYK, 16-bit, palette) was converted and used
    assert len(runs.open_run(runs.run_dir(p)).predictions["keys"]) == 20 - 3
    n_cached = len(list((tmp_path / "cache").glob("*.npy")))
    again = train.run(p.replace(runs_dir=str(tmp_path / "again")))  # decoded splits come from the cache
    assert again["bad_images"] == saved["bad_images"] and len(list((tmp_path / "cache").glob("*.npy"))) == n_cached
    for cache in ("cache", "fresh"):  # bad_images: fail, from the cache and decoding afresh
        strict = p.replace(bad_images="fail", runs_dir=str(tmp_path / f"strict_{cache}"),
                           cache_dir=str(tmp_path / cache))
        with pytest.raises(subsets.BadImageError, match="unreadable image") as e:
            train.run(strict)
        assert any(f"{k}.jpg" in str(e.value) for k in bad)
        assert not (tmp_path / f"strict_{cache}").exists()  # refused before anything was written


def test_bad_parameters_fail_at_the_door(tmp_path, tiny_synth, capsys):
    bad = _params_file(tmp_path / "bad.yaml", pateince=3, data_root=str(tiny_synth), runs_dir=str(tmp_path / "runs"))
    done = _cli("run", str(bad), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "bad.yaml" in done.stderr and "'pateince'" in done.stderr and "Did you mean 'patience'" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "runs").exists()
    pizza = _params_file(tmp_path / "pizza.yaml", classes=["pizza"], data_root=str(tiny_synth),
                         runs_dir=str(tmp_path / "runs"))
    assert cli.main(["run", str(pizza)]) == 2
    err = capsys.readouterr().err
    assert "key 'classes': pizza" in err and subsets.load_subset(tiny_synth, num_classes=4).classes[0] in err
    assert not (tmp_path / "runs").exists()


# `python -m foodcnn` with a stand-in clock that advances 100 s per epoch (checkpoint times follow the epochs,
# not the machine's speed), and an epoch BLOCK that waits, once begun, until the file GO exists.
TIMED_CLI = """
import os, sys, time
from pathlib import Path
from foodcnn.pipeline import cli
from foodcnn import checkpoints
from foodcnn.training import epochs

now, calls, real = [0.0], [0], epochs.train_one_epoch

def epoch(*a, **kw):
    calls[0] += 1
    if calls[0] == int(os.environ["BLOCK"]):
        Path(os.environ["GO"] + ".waiting").touch()
        while not Path(os.environ["GO"]).exists():
            time.sleep(0.02)
    out = real(*a, **kw)
    now[0] += 100.0
    return out

epochs.train_one_epoch = epoch
checkpoints.Keeper.clock = staticmethod(lambda: now[0])
sys.exit(cli.main(sys.argv[1:]))
"""


def _timed_cli(tmp_path, args: list[str], block: int) -> tuple[subprocess.Popen, Path]:
    """Start TIMED_CLI; return it once it waits in epoch `block`, and the file that lets that epoch go on."""
    go = tmp_path / "go"
    log = open(tmp_path / "log.txt", "w")
    proc = subprocess.Popen([sys.executable, "-c", TIMED_CLI, *args], stdout=log, stderr=log,
                            env={**os.environ, "BLOCK": str(block), "GO": str(go)})
    deadline = time.time() + 900
    while proc.poll() is None and not go.with_suffix(".waiting").exists() and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None and go.with_suffix(".waiting").exists(), (tmp_path / "log.txt").read_text()
    return proc, go


def _ref_run(tmp_path, tiny_synth):
    """Return (experiment file, its Params with 6 epochs, the uninterrupted result, its metric rows)."""
    exp = _params_file(tmp_path / "kill.yaml", data_root=str(tiny_synth), cache_dir=str(tmp_path / "cache"),
                       patience=6, image_size=16, batch_size=32)  # the smallest input the baseline takes: quick epochs
    p = params.load(exp, overrides={"epochs": 6})
    ref = train.run(p, out=tmp_path / "ref")  # also fills the decode cache
    return exp, p, ref, _metrics(tmp_path / "ref")


def test_sigkill_between_checkpoints_then_resume_equals_uninterrupted(tmp_path, tiny_synth, monkeypatch):
    exp, p, ref, ref_rows = _ref_run(tmp_path, tiny_synth)
    cache = tmp_path / "cache"
    rdir = tmp_path / "killed"
    run = ["run", str(exp), "--set", "epochs=6", "--out", str(rdir)]
    # 100 s per epoch, last.pt every 250 s: written after epochs 3 and 6. Killed in epoch 5, epoch 4 is lost.
    proc, _ = _timed_cli(tmp_path, [*run, "--set", "checkpoint_every_s=250"], block=5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "log.txt").read_text()
    assert checkpoints.load(rdir / runs.LAST)["epoch"] == 3 and not (rdir / runs.RESULT).exists()
    assert not (rdir / runs.BEST).exists()  # the best weights are in last.pt until the run ends
    # what a killed atomic write leaves: temp files that no reader may take for the real thing
    (rdir / ".result.json.k1ll3d.tmp").write_text(json.dumps({**ref, "fingerprint": p.fingerprint()}))
    (rdir / ".last.pt.k1ll3d.tmp").write_bytes(b"half a checkpoint")
    (cache / ".x.npy.old.tmp").write_bytes(b"")
    os.utime(cache / ".x.npy.old.tmp", (0, 0))
    (cache / ".x.npy.live.tmp").write_bytes(b"")  # young: could be another run's write in progress
    assert runs.read_result(rdir) is None and not runs.is_finished(rdir, p)

    done = _cli(*run, "--resume")
    assert done.returncode == 0, done.stderr
    assert not list(rdir.glob(".*.tmp")) and not (cache / ".x.npy.old.tmp").exists()
    assert (cache / ".x.npy.live.tmp").exists() and not (rdir / runs.LAST).exists()
    resumed = runs.read_result(rdir)
    assert resumed["resumed_from_epoch"] == 3
    assert {k: resumed[k] for k in COMPARED} == {k: ref[k] for k in COMPARED}
    pd.testing.assert_frame_equal(_metrics(rdir), ref_rows)

    # Killed while best.pt is written at the end (after the last checkpoint): resume tests the same weights.
    real_save, cut = checkpoints.save, tmp_path / "cut"

    def killed_writing_best(path, **content):
        if str(path).endswith(runs.BEST):
            raise KeyboardInterrupt
        real_save(path, **content)

    monkeypatch.setattr(checkpoints, "save", killed_writing_best)
    with pytest.raises(KeyboardInterrupt):
        train.run(p.replace(checkpoint_every_s=0), out=cut)
    monkeypatch.setattr(checkpoints, "save", real_save)
    assert checkpoints.load(cut / runs.LAST)["epoch"] == ref["epochs_run"] and not (cut / runs.BEST).exists()
    again = train.run(p, out=cut, resume=True)
    assert {k: again[k] for k in COMPARED} == {k: ref[k] for k in COMPARED}


def test_sigterm_finishes_the_epoch_checkpoints_it_and_exits_130(tmp_path, tiny_synth):
    exp, p, ref, ref_rows = _ref_run(tmp_path, tiny_synth)
    rdir = tmp_path / "stopped"
    run = ["run", str(exp), "--set", "epochs=6", "--out", str(rdir)]
    proc, go = _timed_cli(tmp_path, run, block=2)  # 200 s of training: last.pt (every 300 s) is not due
    proc.send_signal(signal.SIGTERM)  # arrives in epoch 2...
    deadline = time.time() + 60
    while "SIGTERM: finishing this epoch" not in (tmp_path / "log.txt").read_text() and time.time() < deadline:
        time.sleep(0.02)
    assert not (rdir / runs.LAST).exists()
    go.touch()  # ...which then goes on to its end
    assert proc.wait(timeout=900) == 130, (tmp_path / "log.txt").read_text()
    assert "interrupted; resume with --resume" in (tmp_path / "log.txt").read_text()
    last = checkpoints.load(rdir / runs.LAST)
    assert last["epoch"] == 2 and len(pd.read_csv(rdir / runs.METRICS)) == 2 and not (rdir / runs.RESULT).exists()
    done = _cli(*run, "--resume")
    assert done.returncode == 0, done.stderr
    resumed = runs.read_result(rdir)
    assert resumed["resumed_from_epoch"] == 2
    assert {k: resumed[k] for k in COMPARED} == {k: ref[k] for k in COMPARED}
    pd.testing.assert_frame_equal(_metrics(rdir), ref_rows)


def test_real_divergence_is_a_finished_run(tiny_params):
    p = tiny_params(lr=1e30, epochs=3)  # Adam's first step moves every weight by lr: the next forward overflows
    result = train.run(p)
    rdir = runs.run_dir(p)
    assert result["status"] == "diverged" and result["diverged_epoch"] == 1
    assert result["best_epoch"] is None and result["test_acc"] is None and not (rdir / runs.BEST).exists()
    assert "diverged" in train.describe(result)
    assert runs.read_result(rdir)["status"] == "diverged" and runs.is_finished(rdir, p)  # the batch goes on


def test_deterministic_runs_repeat_exactly_and_record_provenance(tiny_params, monkeypatch):
    calls = []
    real = torch.use_deterministic_algorithms
    monkeypatch.setattr(torch, "use_deterministic_algorithms", lambda mode, **kw: (calls.append(mode), real(mode, **kw)))
    pa, pb = (tiny_params(deterministic=True, augment="hflip", image_size=16, runs_dir=f"{tiny_params().runs_dir}/{d}")
              for d in "ab")
    try:
        a, b = train.run(pa), train.run(pb)
        assert calls == [True, True]
    finally:
        real(False)
    assert {k: a[k] for k in COMPARED} == {k: b[k] for k in COMPARED}
    pd.testing.assert_frame_equal(_metrics(runs.run_dir(pa)), _metrics(runs.run_dir(pb)))
    assert a["device"] == "cpu" and a["seed"] == 0 and a["deterministic"] is True
    assert set(a["versions"]) >= {"python", "torch", "torchvision", "numpy", "foodcnn"}
    assert a["versions"]["torch"] == torch.__version__
    train.seed_everything(0, deterministic=False)  # a later run does not inherit the setting
    assert calls[-1] is False and not torch.are_deterministic_algorithms_enabled()


class _Payload:
    """Unpickling this runs a shell command (what a hostile checkpoint would do)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_tampered_and_foreign_checkpoints_are_refused(tmp_path, tiny_synth, capsys):
    good = tmp_path / "good.pt"
    checkpoints.save(good, model=torch.nn.Linear(3, 2).state_dict(), epoch=1)
    marker = tmp_path / "pwned"
    files = {"random.pt": os.urandom(2048), "empty.pt": b"", "truncated.pt": good.read_bytes()[:200]}
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    torch.save({"format": checkpoints.FORMAT, "model": _Payload(marker)}, tmp_path / "evil.pt")
    torch.save(torch.nn.Linear(3, 2).state_dict(), tmp_path / "foreign.pt")
    for name in [*files, "evil.pt"]:
        with pytest.raises(checkpoints.CheckpointError, match="cannot be loaded safely") as e:
            checkpoints.load(tmp_path / name)
        assert name in str(e.value) and "Re-running" not in str(e.value)  # not torch's advice to load unsafely
    assert not marker.exists()  # the payload did not run...
    torch.load(tmp_path / "evil.pt", weights_only=False)
    assert marker.exists()  # ...though it would have, loaded unsafely
    with pytest.raises(checkpoints.CheckpointError, match="not a foodcnn checkpoint"):
        checkpoints.load(tmp_path / "foreign.pt")
    assert checkpoints.load(good)["epoch"] == 1

    rdir = tmp_path / "run"
    rdir.mkdir()
    (rdir / runs.LAST).write_bytes(os.urandom(512))
    exp = _params_file(tmp_path / "r.yaml", data_root=str(tiny_synth), cache_dir=str(tmp_path / "cache"))
    assert cli.main(["run", str(exp), "--out", str(rdir), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "error: checkpoint" in err and str(rdir / runs.LAST) in err and "Traceback" not in err


def test_full_disk_gives_a_clear_error_and_keeps_the_old_file(tmp_path, monkeypatch):
    # A full disk shows up from torch.save as "[enforce fail at inline_container.cc] unexpected pos ...".
    import shutil

    import torch

    from foodcnn import atomic

    target = tmp_path / "best.pt"
    atomic.atomic_torch_save(target, {"w": torch.zeros(3)})
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 2**20, 2**20))

    def broken_save(obj, f):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1066307456 vs 1066307344")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match=r"disk is full \(1 MB free.*run again"):
        atomic.atomic_torch_save(target, {"w": torch.ones(3)})
    monkeypatch.undo()
    assert torch.equal(torch.load(target)["w"], torch.zeros(3))  # the old file stands
    assert not list(tmp_path.glob(".*.tmp"))  # and no temp file is left behind


def _damage(case: str, tmp_path) -> tuple[dict, list[str], list[str]]:
    """Set up one damaged input; return (params file keys, extra CLI args, fragments the error must hold)."""
    base = write_food101(tmp_path / "data", ["apple_pie", "baklava"], 6, 3)
    keys = dict(data_root=str(base), num_classes=2, runs_dir=str(tmp_path / "runs"), cache_dir=str(tmp_path / "cache"))
    meta = base / "meta"
    resnet = dict(model="resnet18", image_size=32, freeze="head", pretrained="required")
    if case == "latin-1 meta":
        (meta / "classes.txt").write_bytes("apple_pie\nbaklava\ncrème_brûlée\n".encode("latin-1"))
        return keys, [], [f"{meta / 'classes.txt'}, line 3: not UTF-8", "save it again as UTF-8"]
    if case == "class maps to a string":
        split = json.loads((meta / "train.json").read_text())
        (meta / "train.json").write_text(json.dumps({**split, "apple_pie": split["apple_pie"][0]}))
        return keys, [], [f"{meta / 'train.json'}: key 'apple_pie' maps to a str", "list of 'class/id' strings"]
    if case == "damaged weights":
        torch.save(torch.nn.Linear(3, 2).state_dict(), tmp_path / "w.pth")
        (tmp_path / "w.pth").write_bytes((tmp_path / "w.pth").read_bytes()[:100])
        return {**keys, **resnet, "weights_path": str(tmp_path / "w.pth")}, [], [
            f"weights_path {tmp_path / 'w.pth'} cannot be loaded", "failed finding central directory): the file is "
            "damaged", "resnet18-f37072fd.pth"]  # torch's first sentence only, not its guesses about miniz
    if case == "another architecture's weights":
        torch.save(registry.build("baseline").state_dict(), tmp_path / "w.pth")
        return {**keys, **resnet, "weights_path": str(tmp_path / "w.pth")}, [], [
            "does not fit resnet18 (122 of resnet18's 122 tensors missing", "32 unexpected: features.conv1.conv.weight"]
    if case == "--set without =":
        return keys, ["--set", "epochs"], ["--set 'epochs': expected KEY=VALUE"]
    if case == "--set unclosed list":
        return keys, ["--set", "lr=[1"], ["--set 'lr=[1': the value is not valid YAML", "close the brackets"]
    if case == "seed 2**64":
        return {**keys, "seed": 2**64}, [], ["key 'seed': a seed must be an integer from 0 to 2**63 - 1"]
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["latin-1 meta", "class maps to a string", "damaged weights",
                                  "another architecture's weights", "--set without =", "--set unclosed list",
                                  "seed 2**64"])
def test_damaged_inputs_exit_2_with_a_named_cause_and_write_nothing(case, tmp_path, capsys):
    keys, extra, fragments = _damage(case, tmp_path)
    exp = _params_file(tmp_path / "exp.yaml", **keys)
    data_files = {f: f.read_bytes() for f in (tmp_path / "data").rglob("*") if f.is_file()}
    assert cli.main(["run", str(exp), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert all(f in err for f in fragments), err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "cache").exists()
    assert {f: f.read_bytes() for f in (tmp_path / "data").rglob("*") if f.is_file()} == data_files


def test_a_finished_run_is_kept_unless_rerun_is_asked_for(tmp_path, tiny_synth, capsys, monkeypatch):
    exp = _params_file(tmp_path / "f.yaml", data_root=str(tiny_synth), cache_dir=str(tmp_path / "cache"), epochs=1,
                       image_size=16, batch_size=32)
    rdir = tmp_path / "run"
    assert cli.main(["run", str(exp), "--out", str(rdir)]) == 0
    files = {f.name: f.read_bytes() for f in rdir.iterdir()}
    assert {runs.RESULT, runs.BEST, runs.PREDICTIONS} <= set(files)
    capsys.readouterr()

    def interrupted(*args, **kwargs):  # a Ctrl-C the moment a run would start: it must never get that far
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "run", interrupted)
    for extra in (["--resume"], []):
        assert cli.main(["run", str(exp), "--out", str(rdir), *extra]) == 0
        out = capsys.readouterr().out
        assert f"{rdir} is finished (ok, test accuracy " in out and "nothing to do. Pass --rerun" in out
    assert {f.name: f.read_bytes() for f in rdir.iterdir()} == files

    assert cli.main(["run", str(exp), "--out", str(rdir), "--resume", "--set", "lr=0.002"]) == 2
    assert "holds a finished run of other parameters (lr: 0.001 -> 0.002); nothing was changed" in capsys.readouterr().err
    result = json.loads(files[runs.RESULT])
    edits = {"test_acc": ({**result, "test_acc": 55.2}, "key 'test_acc' is 55.2; accuracies are fractions"),
             "broken": ("{\"status\": \"ok\",", "result.json is damaged (JSONDecodeError")}
    for edited, expected in edits.values():
        text = edited if isinstance(edited, str) else json.dumps(edited)
        (rdir / runs.RESULT).write_text(text)
        assert cli.main(["run", str(exp), "--out", str(rdir), "--resume"]) == 2
        err = capsys.readouterr().err
        assert expected in err and "Nothing was changed" in err and "--rerun" in err and "Traceback" not in err
        assert (rdir / runs.RESULT).read_text() == text  # the hand edit stands for the user to repair
        assert {f.name: f.read_bytes() for f in rdir.iterdir() if f.name != runs.RESULT} == {
            k: v for k, v in files.items() if k != runs.RESULT}

    monkeypatch.undo()
    assert cli.main(["run", str(exp), "--out", str(rdir), "--rerun"]) == 0  # asked for: trained again
    assert runs.load_result(rdir)["status"] == "ok"


def test_without_a_terminal_progress_is_one_line_per_epoch(tmp_path, tiny_synth):
    import fcntl
    import pty
    import struct
    import termios

    exp = _params_file(tmp_path / "p.yaml", data_root=str(tiny_synth), cache_dir=str(tmp_path / "cache"), epochs=2,
                       image_size=16, batch_size=32, progress=True)
    piped = _cli("run", str(exp), "--out", str(tmp_path / "piped"))  # stderr is a pipe, as in a log file or CI
    assert piped.returncode == 0, piped.stderr
    epochs = [line for line in piped.stderr.splitlines() if "epoch" in line]
    assert len(epochs) == 2 and epochs[1].startswith("INFO foodcnn.training.train: p seed 0 epoch 2/2: train loss ")
    assert "\r" not in piped.stderr and "it/s" not in piped.stderr

    master, slave = pty.openpty()  # a terminal keeps tqdm's bars
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a new pty is 0 columns wide
    proc = subprocess.Popen([sys.executable, "-m", "foodcnn", "run", str(exp), "--out", str(tmp_path / "tty")],
                            stdout=slave, stderr=slave)
    os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    assert proc.wait(timeout=300) == 0, shown.decode(errors="replace")
    assert b"\r" in shown and b"2/2 [" in shown and b"epoch 2/2: train loss" not in shown


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM])
def test_an_interrupted_rerun_keeps_the_old_result_until_the_new_one_is_complete(tmp_path, tiny_synth, stop):
    exp, p, ref, _ = _ref_run(tmp_path, tiny_synth)
    rdir = tmp_path / "ref"
    old = (rdir / runs.RESULT).read_bytes()
    old_predictions = (rdir / runs.PREDICTIONS).read_bytes()
    run = ["run", str(exp), "--set", "epochs=6", "--out", str(rdir), "--rerun"]
    proc, go = _timed_cli(tmp_path, run, block=2)  # the re-run is in its second epoch
    proc.send_signal(stop)
    if stop == signal.SIGTERM:
        go.touch()  # SIGTERM finishes the epoch, checkpoints it, then stops
    proc.wait(timeout=600)
    assert proc.returncode != 0, (tmp_path / "log.txt").read_text()
    # the finished run is still there, whole, and still finished; the unfinished re-run stands beside it, unlisted
    assert (rdir / runs.RESULT).read_bytes() == old and (rdir / runs.PREDICTIONS).read_bytes() == old_predictions
    assert runs.is_finished(rdir, p)
    assert runs.staging_dir(rdir).is_dir() and runs.list_runs(tmp_path) == [rdir]
    # a re-run that completes takes its place
    done = _cli(*run[:-1], "--rerun", "--set", "seed=1")
    assert done.returncode == 0, done.stderr
    assert runs.load_result(rdir)["seed"] == 1 and not runs.staging_dir(rdir).exists()


def test_a_swap_stopped_between_its_renames_is_undone(tmp_path):
    rdir = tmp_path / "runs" / "demo" / "a" / "seed0"
    old = runs.staging_dir(rdir).with_name(".seed0.replaced")
    old.mkdir(parents=True)
    (old / runs.RESULT).write_text("{}")
    runs.recover_swap(rdir)  # stopped after the old run was moved aside, before the new one came in
    assert (rdir / runs.RESULT).is_file() and not old.exists()


def test_a_refused_run_names_the_parameters_that_differ(tmp_path, tiny_synth):
    exp, p, ref, _ = _ref_run(tmp_path, tiny_synth)
    done = _cli("run", str(exp), "--out", str(tmp_path / "ref"), "--set", "epochs=7", "--set", "lr=0.01")
    assert done.returncode == 2
    assert "epochs: 6 -> 7" in done.stderr and "lr: 0.001 -> 0.01" in done.stderr, done.stderr
    assert "seed" not in done.stderr.split("(")[1].split(")")[0]  # only what differs
