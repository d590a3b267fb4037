"""Fresh helper processes for benchmarks/bench.py: each side of a table row is measured in a process of its own."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

import torch

import measure
from foodcnn import params
from foodcnn.data import subsets
from workload import Setup


class Helper:
    """A fresh process that runs measurements for the bench, one call at a time, with or without foodcnn's malloc tuning.

    foodcnn's CPU runs keep freed memory in glibc's heap (allocator.keep_freed_memory, applied by
    train.run); the reports' loop ran with the default malloc. That setting is process-wide and cannot be
    undone, and a process keeps the memory of what it measured before, so each table row measures the
    reference in one fresh helper (default malloc) and ours in another (the library's setting). The two
    alternate and never run at the same time: each call blocks until its helper answers. Helpers read the
    decode cache (`s.cache_dir`), so call `s.split(size)` in the bench first.
    """

    def __init__(self, s: Setup, library_malloc: bool):
        import multiprocessing as mp

        # forkserver: one server process imports torch and this module once; each helper is a fork of it
        # (no interpreter start and torch import per helper), made before any torch thread pool exists.
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["processes"])
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_helper_main,
                                args=(child, s.subset, s.demo, str(s.cache_dir), s.device.type, library_malloc),
                                name="foodcnn-bench-helper")  # not daemonic: the reference starts DataLoader workers
        self.proc.start()
        child.close()
        self.malloc_tuned: bool | None = None

    def ready(self) -> "Helper":
        """Wait until the helper has imported torch and read the set-up; return it."""
        if self.malloc_tuned is None:
            self.malloc_tuned = bool(self._answer())
        return self

    def _answer(self) -> Any:
        try:
            status, value = self.conn.recv()
        except EOFError:
            raise RuntimeError(f"a bench helper process died (exit code {self.proc.exitcode})") from None
        if status == "error":
            raise RuntimeError(f"in a bench helper process:\n{value}")
        return value

    def call(self, fn: str, *args: Any, threads: int | None = None, **kwargs: Any) -> dict:
        """Return measure.<fn>(setup, *args, **kwargs) run in the helper (`threads`: torch threads for this call)."""
        self.ready()
        self.conn.send((fn, args, kwargs, threads))
        return self._answer()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(None)
        self.proc.join(timeout=10)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(timeout=5)


@contextlib.contextmanager
def helpers(s: Setup, reference: bool = True) -> Iterator[tuple[Helper | None, Helper]]:
    """Yield (reference helper or None, ours helper): fresh processes for one table row, started side by side."""
    started = [Helper(s, library_malloc=False) if reference else None, Helper(s, library_malloc=True)]
    try:
        for h in started:
            if h is not None:
                h.ready()
        yield started[0], started[1]
    finally:
        for h in started:
            if h is not None:
                h.close()


def _helper_main(conn: Any, subset: subsets.Subset, demo: params.Params, cache_dir: str, device: str,
                 library_malloc: bool) -> None:
    import traceback

    from foodcnn.training import allocator

    try:
        tuned = allocator.keep_freed_memory() if library_malloc else False
        s = Setup(subset, torch.device(device), Path(cache_dir), demo)
        conn.send(("ok", tuned))
    except Exception:  # noqa: BLE001 - reported to the parent
        conn.send(("error", traceback.format_exc()))
        return
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        fn, args, kwargs, threads = msg
        try:
            with contextlib.ExitStack() as stack:
                if threads is not None:
                    stack.callback(torch.set_num_threads, torch.get_num_threads())
                    torch.set_num_threads(threads)
                result = getattr(measure, fn)(s, *args, **kwargs)
            conn.send(("ok", result))
        except Exception:  # noqa: BLE001 - reported to the parent
            conn.send(("error", traceback.format_exc()))
