"""The batch runner: every catalogue row (x seeds) through its parameterised notebook with papermill, resumable."""

from __future__ import annotations

import difflib
import logging
import os
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

from ..models import registry
from .. import params
from ..results import runs
from ..atomic import atomic_write_text

log = logging.getLogger(__name__)

KERNEL = "python3"  # a pip-installed ipykernel registers as python3 inside the venv (NOTES)
PATH_KEYS = ("data_root", "runs_dir", "cache_dir", "weights_path")


def notebook_for(p: params.Params) -> str:
    """Return the notebook file name that runs a catalogue row (one notebook per experiment kind)."""
    notebook = registry.entry(p.model).notebook
    plain = p.id.endswith("baseline") and not (p.extra_convs or p.extra_pool_after)
    return "custom.ipynb" if notebook == "baseline.ipynb" and not plain else notebook


def catalogue(params_dir: str | Path = "params") -> dict[str, Path]:
    """Return id -> params file for every catalogue row in `params_dir` (profiles excluded)."""
    files = sorted(Path(params_dir).glob("*.yaml"))
    return {f.stem: f for f in files}


def select(ids: Iterable[str] | None, params_dir: str | Path = "params") -> dict[str, Path]:
    """Return the rows named by `ids` (all when empty), with a did-you-mean error for an unknown id."""
    rows = catalogue(params_dir)
    if not rows:
        raise params.ParamsError(f"no experiment files (*.yaml) in {params_dir}")
    ids = list(ids or [])
    if not ids:
        return rows
    unknown = [i for i in ids if i not in rows]
    if unknown:
        close = difflib.get_close_matches(unknown[0], rows, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise params.ParamsError(f"unknown experiment id {unknown[0]!r}.{hint} Known ids: {', '.join(rows)}")
    return {i: rows[i] for i in ids}


def _absolute(p: params.Params) -> params.Params:
    changes = {k: str(Path(getattr(p, k)).expanduser().resolve()) for k in PATH_KEYS if getattr(p, k)}
    return p.replace(**changes)


@dataclass
class Job:
    """One run of the batch: a catalogue row at one seed."""

    params: params.Params
    params_file: Path
    notebook: Path

    @property
    def run_dir(self) -> Path:
        """Return where this job writes."""
        return runs.run_dir(self.params)

    @property
    def name(self) -> str:
        """Return "id seedN"."""
        return f"{self.params.id} seed{self.params.seed}"


def plan(profile: str, ids: Iterable[str] | None = None, params_dir: str | Path = "params",
         notebooks_dir: str | Path = "notebooks", overrides: dict | None = None) -> list[Job]:
    """Return the batch's jobs; every params file is resolved and validated before anything runs."""
    jobs: list[Job] = []
    for rid, path in select(ids, params_dir).items():
        p = _absolute(params.load(path, profile=profile, overrides=overrides, params_dir=params_dir))
        nb = (Path(notebooks_dir) / notebook_for(p)).resolve()  # absolute: another process or node opens it
        if not nb.is_file():
            raise FileNotFoundError(f"notebook {nb} for {rid} is missing")
        for seed in p.seeds:
            jobs.append(Job(p.replace(seed=seed), path, nb))
    return jobs


@dataclass
class Outcome:
    """What happened to one job."""

    job: Job
    status: str  # "ok", "diverged", "skipped", "failed"
    seconds: float
    error: str = ""
    gpu: str = ""  # the CUDA_VISIBLE_DEVICES its kernel ran with ("" when none was set)
    started: float = 0.0  # time.time() when its notebook started
    node: str = ""  # the machine it ran on, when not this one


def _kernel_manager(env: dict[str, str], cwd: str | None) -> type:
    """Return a Jupyter kernel manager class whose kernels start with `env` added to this process's environment.

    and in `cwd` (when given): a kernel launch option, unlike papermill's cwd=, which changes this whole process's.
    """
    from jupyter_client import AsyncKernelManager

    class KernelManager(AsyncKernelManager):
        async def start_kernel(self, **kw):  # restarts reuse these launch arguments
            kw["env"] = {**os.environ, **kw.get("env", {}), **env}
            if cwd:
                kw["cwd"] = cwd
            await super().start_kernel(**kw)

    return KernelManager


def clear_stale_result(rdir: Path, p: params.Params) -> None:
    """Remove a result of other parameters (it must not stand for this job); keep a damaged one as result.json.damaged."""
    try:
        runs.load_result(rdir)
    except runs.ResultError as e:  # somebody's file: set aside with a warning, never silently deleted
        kept = rdir / f"{runs.RESULT}.damaged"
        os.replace(rdir / runs.RESULT, kept)
        log.warning("%s; kept as %s and the run is trained again", e, kept)
        return
    if not runs.is_finished(rdir, p):
        (rdir / runs.RESULT).unlink(missing_ok=True)


def execute(job: Job, env: dict[str, str] | None = None, cwd: str | None = None) -> Outcome:
    """Run one job's notebook with papermill into its run directory; record a failure instead of raising.

    `env` is added to the kernel's environment (e.g. CUDA_VISIBLE_DEVICES, OMP_NUM_THREADS); `cwd` is the kernel's
    working directory (default: this process's), which the notebooks' relative paths start from.
    """
    import papermill as pm

    rdir = job.run_dir
    rdir.mkdir(parents=True, exist_ok=True)
    (rdir / runs.ERROR).unlink(missing_ok=True)
    clear_stale_result(rdir, job.params)
    atomic_write_text(rdir / runs.PARAMS, params.dump(job.params))  # the report lists the job even if it fails early
    env = dict(env or {})
    gpu = env.get("CUDA_VISIBLE_DEVICES", os.environ.get("CUDA_VISIBLE_DEVICES", ""))
    started, t0 = time.time(), time.perf_counter()
    out_nb = rdir / runs.NOTEBOOK
    extra = {"kernel_manager_class": _kernel_manager(env, cwd)} if env or cwd else {}
    try:
        pm.execute_notebook(
            str(job.notebook), str(out_nb), parameters=job.params.to_dict(), kernel_name=KERNEL,
            progress_bar=False, log_output=False,  # no cwd=: papermill's chdir is not thread-safe (papermill issue #473)
            shutdown_kernel="immediate",  # the run's files are complete; a graceful stop only waits on the kernel
            config=kernel_config(), **extra,
        )
    except Exception as e:  # PapermillExecutionError, a dead kernel, ...
        ename = getattr(e, "ename", type(e).__name__)
        evalue = getattr(e, "evalue", str(e))
        msg = f"{ename}: {evalue}"
        atomic_write_text(rdir / runs.ERROR, f"{msg}\n\nnotebook: {out_nb}\n\n{traceback.format_exc()}")
        return Outcome(job, "failed", time.perf_counter() - t0, msg, gpu, started)
    result = runs.read_result(rdir) or {}
    return Outcome(job, result.get("status", "failed"), time.perf_counter() - t0,
                   "" if result else "the notebook finished without writing result.json", gpu, started)


def kernel_config() -> "Any":
    """Return the kernel manager's config: CurveZMQ-encrypted kernel sockets where pyzmq has Curve.

    Unencrypted, every kernel logs ipykernel's "running over TCP without encryption" warning to the output of
    the batch and the report. (Unix sockets would avoid it too, but two kernels started at once by one process share their paths.)
    """
    import zmq
    from traitlets.config import Config

    return Config({"KernelManager": {"transport_encryption": "required"}}) if zmq.has("curve") else Config()


def visible_gpus() -> list[str]:
    """Return the CUDA devices this process may use, as CUDA_VISIBLE_DEVICES names them (none on a CPU machine)."""
    import torch

    count = torch.cuda.device_count()
    if "CUDA_VISIBLE_DEVICES" in os.environ:  # the user's selection (indices or UUIDs) is what a kernel may name
        listed = [d.strip() for d in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if d.strip()]
        return listed[:count]
    return [str(i) for i in range(count)]


class GpuPool:
    """Hands out GPUs to concurrent runs: the least busy one first, so that with runs <= GPUs each has its own."""

    def __init__(self, gpus: list[str]):
        self._users = {g: 0 for g in gpus}
        self._lock = threading.Lock()

    def acquire(self) -> str | None:
        """Return the GPU with the fewest runs on it (None without GPUs) and count this run on it."""
        with self._lock:
            if not self._users:
                return None
            gpu = min(self._users, key=self._users.get)  # dicts keep order: ties go to the first listed
            self._users[gpu] += 1
            return gpu

    def release(self, gpu: str | None) -> None:
        """Count a run off its GPU: it ended (finished, failed or interrupted)."""
        if gpu is not None:
            with self._lock:
                self._users[gpu] -= 1


Done = Callable[[int, Outcome], None]
Starting = Callable[[int], None]


class Executor(Protocol):
    """Where the batch's notebooks run: `run` executes the jobs to do and calls `done` once per job as it ends.

    `starting(index)`, where the executor knows it, says that a job's notebook is starting.
    """

    def run(self, todo: dict[int, Job], done: Done, starting: Starting) -> None: ...


def cpu_jobs() -> int:
    """Return how many notebooks run at once without a GPU: two where there are two cores or more.

    A notebook's kernel spends seconds starting, importing and drawing on one core; a second kernel keeps the
    other core busy meanwhile. More than two would only share the cores (and hold more memory).
    """
    return min(2, os.cpu_count() or 1)


class Threads:
    """Runs notebooks on this machine, `workers` kernels at a time (default: one per visible GPU, else cpu_jobs()).

    Each kernel is pinned to its own GPU (CUDA_VISIBLE_DEVICES) while there are GPUs enough, and gets an
    equal share of the CPU cores. Threads suffice: each notebook runs in its own kernel process.
    """

    def __init__(self, workers: int | None = None, gpus: list[str] | None = None):
        self.gpus = visible_gpus() if gpus is None else gpus
        self.workers = workers or len(self.gpus) or cpu_jobs()

    def kernel_env(self, gpu: str | None) -> dict[str, str]:
        """Return the environment a kernel gets next to this process's: its GPU, its share of the CPU threads."""
        env = {} if gpu is None else {"CUDA_VISIBLE_DEVICES": gpu}
        if self.workers > 1 and "OMP_NUM_THREADS" not in os.environ:  # the user's choice stands
            env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // self.workers))
        return env

    def run(self, todo: dict[int, Job], done: Done, starting: Starting) -> None:
        """Execute the jobs, calling `done(index, outcome)` as each ends; Ctrl-C starts nothing new."""
        pool = GpuPool(self.gpus)

        def one(i: int) -> Outcome:
            gpu = pool.acquire()
            try:
                starting(i)
                return execute(todo[i], self.kernel_env(gpu))
            finally:
                pool.release(gpu)

        if self.workers <= 1:
            for i in todo:
                done(i, one(i))
            return
        with ThreadPoolExecutor(max_workers=self.workers) as threads:
            futures = {threads.submit(one, i): i for i in todo}
            try:
                for fut in as_completed(futures):
                    done(futures[fut], fut.result())
            except KeyboardInterrupt:  # start nothing new; the running kernels got the same Ctrl-C
                threads.shutdown(wait=False, cancel_futures=True)
                raise


def report_line(outcome: Outcome) -> str:
    """Return the log line of one ended run."""
    line = f"{outcome.job.name}: {outcome.status} in {outcome.seconds:.0f}s"
    where = " ".join(([outcome.node] if outcome.node else []) + ([f"GPU {outcome.gpu}"] if outcome.gpu else []))
    if where:
        line += f" ({where})"
    if outcome.error:
        line += f" ({outcome.error.splitlines()[0][:200]}; see {outcome.job.run_dir / runs.ERROR})"
    return line


def run_batch(jobs: list[Job], progress: bool = True, rerun: bool = False, workers: int | None = None,
              executor: Executor | None = None) -> list[Outcome]:
    """Execute the jobs with `executor` (default: Threads(workers)), skipping finished runs with unchanged parameters.

    Failures do not stop the batch. Outcomes come back in the order of `jobs`.
    """
    from tqdm.auto import tqdm

    executor = executor or Threads(workers)
    outcomes: dict[int, Outcome] = {}
    todo: dict[int, Job] = {}
    for i, job in enumerate(jobs):
        if not rerun and runs.is_finished(job.run_dir, job.params):
            outcomes[i] = Outcome(job, "skipped", 0.0)
        else:
            todo[i] = job
    bar = tqdm(total=len(jobs), initial=len(outcomes), desc="batch", unit="run", disable=not progress)
    running: dict[int, str] = {}  # the bar names the runs in progress
    lock = threading.Lock()  # `starting` comes from the executor's threads

    def starting(i: int) -> None:
        with lock:
            running[i] = jobs[i].name
            bar.set_postfix_str(", ".join(running.values()))

    def done(i: int, outcome: Outcome) -> None:
        outcomes[i] = outcome
        (log.warning if outcome.status == "failed" else log.info)(report_line(outcome))
        with lock:
            running.pop(i, None)
            bar.set_postfix_str(", ".join(running.values()), refresh=False)
            bar.update(1)

    if todo:
        executor.run(todo, done, starting)
    bar.close()
    return [outcomes[i] for i in range(len(jobs))]


def summary(outcomes: list[Outcome]) -> str:
    """Return a short text summary of a batch."""
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    lines = [", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "nothing to do"]
    for o in outcomes:
        if o.status == "failed":
            lines.append(f"  FAILED {o.job.name}: {o.error.splitlines()[0][:200] if o.error else ''} ({o.job.run_dir / runs.ERROR})")
    return "\n".join(lines)
