"""The batch runner: every catalogue row (x seeds) through its parameterised notebook with papermill, resumable."""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
import time
import traceback
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from . import models, params, runs
from .atomic import atomic_write_text

log = logging.getLogger(__name__)

KERNEL = "python3"  # a pip-installed ipykernel registers as python3 inside the venv (NOTES)
PATH_KEYS = ("data_root", "runs_dir", "cache_dir", "weights_path")


def notebook_for(p: params.Params) -> str:
    """Return the notebook file name that runs a catalogue row (one notebook per experiment kind)."""
    if models.family(p.model) == "small":
        plain = p.model == "baseline" and not (p.extra_convs or p.extra_pool_after)
        return "baseline.ipynb" if plain and p.id.endswith("baseline") else "custom.ipynb"
    if p.model.startswith("vgg"):
        return "vgg.ipynb"
    if p.model.startswith("resnet"):
        return "resnet.ipynb"
    return "transfer.ipynb"


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
        nb = Path(notebooks_dir) / notebook_for(p)
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


def execute(job: Job, progress: bool = False) -> Outcome:
    """Run one job's notebook with papermill into its run directory; record a failure instead of raising."""
    import papermill as pm

    rdir = job.run_dir
    rdir.mkdir(parents=True, exist_ok=True)
    (rdir / runs.ERROR).unlink(missing_ok=True)
    if not runs.is_finished(rdir, job.params):  # a result of other parameters must not stand for this job
        (rdir / runs.RESULT).unlink(missing_ok=True)
    atomic_write_text(rdir / runs.PARAMS, params.dump(job.params))  # the report lists the job even if it fails early
    t0 = time.perf_counter()
    out_nb = rdir / runs.NOTEBOOK
    try:
        pm.execute_notebook(
            str(job.notebook), str(out_nb), parameters=job.params.to_dict(), kernel_name=KERNEL,
            progress_bar=False, log_output=False,  # no cwd=: papermill's chdir is not thread-safe (issue #473)
            shutdown_kernel="immediate",  # the run's files are complete; a graceful stop costs ~1 s a notebook
        )
    except Exception as e:  # PapermillExecutionError, a dead kernel, ...
        ename = getattr(e, "ename", type(e).__name__)
        evalue = getattr(e, "evalue", str(e))
        msg = f"{ename}: {evalue}"
        atomic_write_text(rdir / runs.ERROR, f"{msg}\n\nnotebook: {out_nb}\n\n{traceback.format_exc()}")
        return Outcome(job, "failed", time.perf_counter() - t0, msg)
    result = runs.read_result(rdir) or {}
    return Outcome(job, result.get("status", "failed"), time.perf_counter() - t0,
                   "" if result else "the notebook finished without writing result.json")


@contextlib.contextmanager
def _kernel_threads(workers: int) -> Iterator[None]:
    """Give each of `workers` concurrent kernels an equal share of the CPU cores (kernels inherit the environment)."""
    if "OMP_NUM_THREADS" in os.environ:  # the user's choice stands
        yield
        return
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // workers))
    try:
        yield
    finally:
        del os.environ["OMP_NUM_THREADS"]


def run_batch(jobs: list[Job], progress: bool = True, rerun: bool = False, workers: int = 1) -> list[Outcome]:
    """Execute the jobs, `workers` notebooks at a time, skipping finished runs with unchanged parameters.

    Failures do not stop the batch. Outcomes come back in the order of `jobs`.
    """
    from tqdm.auto import tqdm

    outcomes: dict[int, Outcome] = {}
    todo: list[int] = []
    for i, job in enumerate(jobs):
        if not rerun and runs.is_finished(job.run_dir, job.params):
            outcomes[i] = Outcome(job, "skipped", 0.0)
        else:
            todo.append(i)
    bar = tqdm(total=len(jobs), initial=len(outcomes), desc="batch", unit="run", disable=not progress)

    def done(i: int, outcome: Outcome) -> None:
        outcomes[i] = outcome
        line = f"{outcome.job.name}: {outcome.status} in {outcome.seconds:.0f}s"
        if outcome.error:
            line += f" ({outcome.error.splitlines()[0][:200]}; see {outcome.job.run_dir / runs.ERROR})"
        (log.warning if outcome.status == "failed" else log.info)(line)
        bar.update(1)

    if workers <= 1:
        for i in todo:
            bar.set_postfix_str(jobs[i].name)
            done(i, execute(jobs[i]))
    else:
        # Threads suffice: each notebook runs in its own kernel process.
        with _kernel_threads(workers), ThreadPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(execute, jobs[i]): i for i in todo}
            try:
                for fut in as_completed(futures):
                    done(futures[fut], fut.result())
            except KeyboardInterrupt:  # start nothing new; the running kernels got the same Ctrl-C
                pool.shutdown(wait=False, cancel_futures=True)
                raise
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
