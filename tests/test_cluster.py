"""The batch on Ray: a local instance with two (fake) GPUs runs catalogue rows as the thread executor does."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

from conftest import write_probe_notebook
from foodcnn.pipeline import cluster
from foodcnn.results import runs
from foodcnn.pipeline.cli import main

ROOT = Path(__file__).resolve().parents[1]
ROWS = ("b_baseline", "b_custom3", "b_resnet_stock")


def test_a_run_asks_for_one_gpu_and_its_share_of_cpus_or_a_whole_node():
    assert cluster.task_resources([{"CPU": 16, "GPU": 8}, {"CPU": 64, "GPU": 8}]) == {"num_gpus": 1, "num_cpus": 2}
    assert cluster.task_resources([{"CPU": 4}, {"CPU": 8, "GPU": 2}]) == {"num_gpus": 1, "num_cpus": 4}
    assert cluster.task_resources([{"CPU": 32}, {"CPU": 16}]) == {"num_gpus": 0, "num_cpus": 16}


def test_storage_not_shared_stops_with_the_directory_named(tmp_path):
    def elsewhere(folder, token, must_see):  # a node whose runs directory is another disk than this machine's
        other = tmp_path / "node-disk"
        return [cluster._write_probe(str(other), token, must_see) | {"node": "gpu-node-7"}]

    with pytest.raises(cluster.StorageError, match=r"runs directory .*runs is not shared.*gpu-node-7.*runs_dir"):
        cluster.check_shared_storage([tmp_path / "runs"], [], elsewhere)

    def blind(folder, token, must_see):  # a node that shares runs/ but not the data
        return [cluster._write_probe(folder, token, must_see)]

    with pytest.raises(cluster.StorageError, match="cannot see .*food-101"):
        cluster.check_shared_storage([tmp_path / "runs"], [str(tmp_path / "food-101")], blind)
    cluster.check_shared_storage([tmp_path / "runs"], [str(tmp_path)], blind)  # shared: no error
    assert not list((tmp_path / "runs").iterdir())  # the probe files are gone


@pytest.fixture(scope="module")
def ray_two_gpus():
    """A local Ray instance with 2 CPUs and 2 fake GPUs, shared by this module's tests."""
    ray = pytest.importorskip("ray")
    for attempt in range(3):  # on a loaded machine Ray's helper processes can miss its fixed start-up deadlines
        try:
            ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False,
                     object_store_memory=100 * 2**20)
            break
        except Exception:
            ray.shutdown()
            if attempt == 2:
                raise
    yield ray
    ray.shutdown()


def _study(base: Path, tiny_synth: Path) -> tuple[list[str], Path]:
    """Write a params folder with ROWS and a "victim" row, notebooks with the probe as the victim's; return CLI args."""
    pdir, nbdir = base / "params", base / "notebooks"
    (pdir / "profiles").mkdir(parents=True)
    for rid in ROWS:
        shutil.copy(ROOT / "params" / f"{rid}.yaml", pdir)
    shutil.copy(ROOT / "params" / "published.csv", pdir)
    shutil.copy(ROOT / "params" / "profiles" / "tiny.yaml", pdir / "profiles")
    (pdir / "victim.yaml").write_text("report: X\nmodel: efficientnet_lite0\n")  # its notebook: transfer.ipynb
    nbdir.mkdir()
    for name in ("baseline.ipynb", "custom.ipynb", "resnet.ipynb"):
        shutil.copy(ROOT / "notebooks" / name, nbdir)
    write_probe_notebook(nbdir / "transfer.ipynb")
    args = ["batch", "--profile", "tiny", "-q", "--params-dir", str(pdir), "--notebooks-dir", str(nbdir)]
    for key, value in {"data_root": tiny_synth, "num_classes": 4, "cache_dir": base / "cache", "device": "cpu"}.items():
        args += ["--set", f"{key}={value}"]
    return args, base


def _kill_victim_once_a_row_ran_beside_it(runs_dir: Path, stop: threading.Event) -> None:
    """Kill the process running the victim's notebook once a catalogue row has finished while the victim ran."""
    victim = runs_dir / "victim.json"
    while not stop.wait(0.2):
        if victim.is_file():
            since = victim.stat().st_mtime
            if any(f.stat().st_mtime > since for f in runs_dir.glob(f"tiny/b_*/seed0/{runs.RESULT}")):
                os.kill(json.loads(victim.read_text())["parent"], signal.SIGKILL)
                (runs_dir / "killed").write_text(str(time.time()))
                return


def test_ray_batch_matches_threads_pins_gpus_and_survives_a_killed_worker(ray_two_gpus, tiny_synth, tmp_path,
                                                                          monkeypatch, caplog):
    args, base = _study(tmp_path, tiny_synth)
    monkeypatch.chdir(base)  # the notebooks read params/published.csv from their working directory
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # both executors then train with one thread a run, so alike
    ray_runs, thread_runs = base / "runs_ray", base / "runs_thread"

    assert main(args + ["--set", f"runs_dir={thread_runs}", "--jobs", "2", *ROWS]) == 0
    stop = threading.Event()
    killer = threading.Thread(target=_kill_victim_once_a_row_ran_beside_it, args=(ray_runs, stop), daemon=True)
    killer.start()
    caplog.set_level("INFO", logger="foodcnn.pipeline.batch")
    try:
        status = main(args + ["--set", f"runs_dir={ray_runs}", "--executor", "ray", "victim", *ROWS])
    finally:
        stop.set()
    assert (ray_runs / "killed").is_file()
    assert status == 1  # one row failed ...
    victim_dir = ray_runs / "tiny" / "victim" / "seed0"
    assert not runs.is_finished(victim_dir) and (victim_dir / runs.PARAMS).is_file()  # ... and is run again next batch
    assert "WorkerCrashedError" in (victim_dir / runs.ERROR).read_text()

    for rid in ROWS:  # ... while the others finished, with the thread executor's numbers
        on_ray, on_threads = (runs.open_run(d / "tiny" / rid / "seed0") for d in (ray_runs, thread_runs))
        assert on_ray.result["status"] == "ok"
        for key in ("best_epoch", "test_acc", "test_loss", "train_acc", "val_acc", "val_loss"):
            assert on_ray.result[key] == pytest.approx(on_threads.result[key], rel=1e-5, abs=1e-7), (rid, key)

    # Which GPU each run saw, and when: the log lines name the GPU; a run starts by writing params.yaml, and
    # papermill writes the notebook last.
    gpu_of = {rid: re.search(r"GPU ([^)\s]+)\)", line).group(1) for line in caplog.messages for rid in ROWS
              if line.startswith(f"{rid} seed0: ok")}
    victim = json.loads((ray_runs / "victim.json").read_text())
    spans = {"victim": (victim["start"], float((ray_runs / "killed").read_text()), victim["gpu"])}
    for rid in ROWS:
        d = ray_runs / "tiny" / rid / "seed0"
        spans[rid] = ((d / runs.PARAMS).stat().st_mtime, (d / runs.NOTEBOOK).stat().st_mtime, gpu_of[rid])
    assert {g for _, _, g in spans.values()} <= {"0", "1"}
    overlapping = [(a, b) for a in spans for b in spans if a < b
                   and spans[a][0] < spans[b][1] and spans[b][0] < spans[a][1]]
    assert overlapping  # the killer waited for a row that ran beside the victim
    for a, b in overlapping:
        assert spans[a][2] != spans[b][2], (a, b, spans)
