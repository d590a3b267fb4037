"""The batch on Ray: each run is one Ray task holding a GPU (or a node's CPUs), on storage every node shares."""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import time
import traceback
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable

from ..results import runs
from ..atomic import atomic_write_text
from .batch import Done, Job, Outcome, Starting, execute

log = logging.getLogger(__name__)

INSTALL_HINT = "--executor ray needs Ray: pip install -e '.[ray]' (or pip install ray)"
PROBE_PREFIX = ".foodcnn-probe-"


class StorageError(OSError):
    """A directory the runs need is not the same for the driver and the nodes."""


class RayUnavailable(OSError):
    """Ray could not be started or reached."""


def import_ray() -> Any:
    """Return the ray module, with an install hint when it is missing."""
    try:
        import ray
    except ImportError as e:
        raise ImportError(INSTALL_HINT) from e
    return ray


def task_resources(nodes: list[dict[str, float]]) -> dict[str, float]:
    """Return what one run asks Ray for, given each alive node's resources.

    With GPUs: one GPU and the CPUs that go with it (a node's CPUs shared by its GPUs, the least of any GPU node),
    so that every GPU can be busy. Without: the CPUs of the smallest node, one run per node, as the thread executor
    runs one notebook with every core of a CPU machine.
    """
    gpu_nodes = [n for n in nodes if n.get("GPU", 0) >= 1]
    if gpu_nodes:
        return {"num_gpus": 1, "num_cpus": max(1, min(int(n.get("CPU", 1) // n["GPU"]) for n in gpu_nodes))}
    return {"num_gpus": 0, "num_cpus": max(1, min((int(n.get("CPU", 1)) for n in nodes), default=1))}


def _run_on_node(job: Job, threads: int, cwd: str) -> Outcome:
    """Run one job where Ray placed it (Ray has set CUDA_VISIBLE_DEVICES to the GPU it reserved for the task).

    The kernel starts in the driver's working directory, as under the thread executor, so relative paths agree.
    """
    outcome = execute(job, {"OMP_NUM_THREADS": str(threads)}, cwd=cwd)
    return dataclasses.replace(outcome, node=socket.gethostname())


def _write_probe(folder: str, token: str, must_see: list[str]) -> dict[str, Any]:
    """Write `token` into a new probe file in `folder`; return the node's name, the file, an error, what it cannot see."""
    host = socket.gethostname()
    name = f"{PROBE_PREFIX}{token}-{uuid.uuid4().hex[:8]}"  # one file per node: one shared node must not vouch for all
    try:
        atomic_write_text(Path(folder) / name, token)
    except OSError as e:
        return {"node": host, "file": name, "error": f"{type(e).__name__}: {e}", "missing": []}
    return {"node": host, "file": name, "error": "", "missing": [p for p in must_see if not Path(p).exists()]}


def check_shared_storage(folders: Iterable[Path], must_see: list[str],
                         write: Callable[[str, str, list[str]], list[dict[str, Any]]]) -> None:
    """Have the nodes write a probe file into each folder (`write` runs `_write_probe` on them) and read it back here.

    Raises StorageError, naming the directory and what to do, when a node cannot write there, when its file is not
    what this machine reads, or when a node cannot see the notebooks or the data.
    """
    advice = ("Put runs_dir (`--set runs_dir=...`), data_root, cache_dir and the notebooks on a filesystem that "
              "every Ray node mounts at the same path (NFS or a cluster filesystem), or run without --executor ray.")
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        token = uuid.uuid4().hex
        try:
            for answer in write(str(folder), token, must_see):
                node, probe = answer["node"], folder / answer["file"]
                if answer["error"]:
                    raise StorageError(f"Ray node {node} cannot write to the runs directory {folder} "
                                       f"({answer['error']}). {advice}")
                if not probe.is_file() or probe.read_text() != token:
                    raise StorageError(f"the runs directory {folder} is not shared: the file {probe.name} that Ray "
                                       f"node {node} wrote there is not visible on this machine. {advice}")
                if answer["missing"]:
                    raise StorageError(f"Ray node {node} cannot see {', '.join(answer['missing'])}. {advice}")
        finally:
            for probe in folder.glob(f"{PROBE_PREFIX}{token}-*"):
                probe.unlink(missing_ok=True)


class Ray:
    """Runs notebooks as Ray tasks: on a local Ray instance (no address) or on the cluster at `address`.

    It connects when there is something to run, unless Ray is already initialised in this process, and then
    disconnects when the batch ends (which stops a local instance it started).
    """

    def __init__(self, address: str | None = None, **init_kwargs: Any):
        self.address, self.init_kwargs = address, init_kwargs

    def run(self, todo: dict[int, Job], done: Done, starting: Starting) -> None:
        """Submit every job as a task, calling `done(index, outcome)` as each ends; Ctrl-C cancels the rest."""
        ray = import_ray()
        connected = not ray.is_initialized()
        if connected:
            where = f"the Ray cluster at {self.address}" if self.address else "a local Ray instance"
            try:
                # Worker output is not forwarded: it would break the progress bar, and each failure is in error.txt.
                ray.init(address=self.address or "local", log_to_driver=False, logging_level=logging.WARNING,
                         **self.init_kwargs)
            except Exception as e:  # Ray raises ConnectionError, RuntimeError or a bare Exception
                ray.shutdown()
                raise RayUnavailable(f"could not start or reach {where}: {e}") from e
        try:
            self._run(todo, done)
        finally:
            if connected:
                ray.shutdown()

    @staticmethod
    def _probe_on(nodes: list[dict[str, Any]]) -> Callable[[str, str, list[str]], list[dict[str, Any]]]:
        """Return a writer for check_shared_storage that runs `_write_probe` once on each of `nodes`."""
        ray = import_ray()
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        probe = ray.remote(_write_probe)

        def write(folder: str, token: str, must_see: list[str]) -> list[dict[str, Any]]:
            return ray.get([probe.options(num_cpus=0, max_retries=0, scheduling_strategy=NodeAffinitySchedulingStrategy(
                n["NodeID"], soft=False)).remote(folder, token, must_see) for n in nodes])

        return write

    def _run(self, todo: dict[int, Job], done: Done) -> None:
        ray = import_ray()
        alive = [n for n in ray.nodes() if n.get("Alive")]
        res = task_resources([n["Resources"] for n in alive])
        workers = [n for n in alive if n["Resources"].get("GPU", 0) >= res["num_gpus"]
                   and n["Resources"].get("CPU", 0) >= res["num_cpus"]]  # the nodes a run can land on
        jobs = list(todo.values())
        cwd = os.getcwd()
        must_see = sorted({str(j.notebook) for j in jobs} | {j.params.data_root for j in jobs} | {cwd})
        check_shared_storage(sorted({Path(j.params.runs_dir) for j in jobs}), must_see, self._probe_on(workers))
        log.info("Ray: each run asks for %s", ", ".join(f"{k} {v:g}" for k, v in res.items()))
        # No retries: a run whose worker or node died is reported failed and resumes on the next batch.
        task = ray.remote(_run_on_node).options(max_retries=0, **res)
        submitted = time.perf_counter()
        refs = {task.remote(job, res["num_cpus"], cwd): i for i, job in todo.items()}
        pending = list(refs)
        try:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1, timeout=1.0)  # a timeout lets Ctrl-C through
                for ref in ready:
                    i = refs[ref]
                    done(i, self._outcome(ref, todo[i], time.perf_counter() - submitted))
        except KeyboardInterrupt:  # queued tasks never start; running ones get KeyboardInterrupt, as under threads
            for ref in pending:
                ray.cancel(ref)
            raise

    @staticmethod
    def _outcome(ref: Any, job: Job, seconds: float) -> Outcome:
        """Return the task's outcome, or a failure (written to the run's error.txt) when Ray lost the task."""
        ray = import_ray()
        try:
            return ray.get(ref)
        except ray.exceptions.RayError as e:  # a dead worker or node, a cancelled task, execute itself raising
            msg = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
            try:
                atomic_write_text(job.run_dir / runs.ERROR,
                                  f"{msg}\n\nThe Ray task of this run ended without an outcome; the run resumes on "
                                  f"the next batch.\n\n{e}\n\n{traceback.format_exc()}")
            except OSError as werr:
                log.warning("could not write %s: %s", job.run_dir / runs.ERROR, werr)
            return Outcome(job, "failed", seconds, msg)
