"""The command line: `python -m foodcnn data|run|batch|report ...`."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from .. import __version__


def cmd_data(args: argparse.Namespace) -> int:
    from ..data import layout, synth

    if args.action == "synth":
        try:
            root = synth.generate(args.out, seed=args.seed, num_classes=args.num_classes,
                                  train_per_class=args.train_per_class, test_per_class=args.test_per_class,
                                  max_side=args.max_side)
        except ValueError as e:  # an option out of range: nothing was written
            print(f"error: data synth: {e}", file=sys.stderr)
            return 2
        print(f"synthetic Food-101 layout ready at {root}")
    elif args.action == "fetch":
        root = layout.fetch_food101(args.out)
        print(f"Food-101 ready at {root}")
        from ..models import registry

        for f in registry.fetch_weights():  # the paper profile requires them (pretrained: required)
            print(f"ImageNet weights ready at {f}")
    elif args.action == "check":
        from ..data import check

        found = check.check(args.out)
        print(check.summary(found))
        return 1 if found.unreadable else 0
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .. import params
    from ..results import runs
    from ..training import train

    p = params.load(args.params, profile=args.profile, overrides=params.parse_overrides(args.set))
    if p.progress and not sys.stderr.isatty():  # a log file or CI: one line per epoch instead of redrawn bars
        p = p.replace(progress=False)
    rdir = runs.run_dir(p, args.out)
    if not args.rerun:  # a finished result is replaced only when asked: a new run starts by removing it
        try:
            done = runs.load_result(rdir)
        except runs.ResultError as e:
            raise runs.ResultError(f"{e}. Nothing was changed: repair the file, or pass --rerun to train the run "
                                   "again (its files are replaced)") from None
        if done is not None and done.get("fingerprint") == p.fingerprint():
            acc = done.get("test_acc")
            print(f"{rdir} is finished ({done['status']}" + (f", test accuracy {100 * acc:.2f}%" if acc is not None else "")
                  + "); nothing to do. Pass --rerun to train it again (its files are replaced).")
            return 0
        if done is not None:
            changed = runs.changed_params(rdir, p)
            raise params.ParamsError(f"{rdir} holds a finished run of other parameters ("
                                     + ("; ".join(changed) if changed else "its fingerprint differs") + "); nothing was "
                                     "changed. Pass --out with another directory, or --rerun to replace that run.")
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops a run as Ctrl-C does (exit 130)
    result = train.run(p, out=rdir, resume=args.resume)
    print(train.describe(result))
    return 0 if result["status"] == "ok" else 3


def _executor(args: argparse.Namespace):
    """Return the batch's executor (threads on this machine, or Ray), or a usage error as a string."""
    if args.executor == "thread" and args.ray_address:
        return "--ray-address needs --executor ray"
    if args.executor == "ray" and args.jobs:
        return "--jobs is for --executor thread; Ray runs as many at a time as the cluster's GPUs (or nodes) allow"
    if args.executor == "thread":
        from . import batch

        return batch.Threads(args.jobs)
    from . import cluster

    try:
        cluster.import_ray()
    except ImportError as e:
        return str(e)
    return cluster.Ray(args.ray_address)


def cmd_batch(args: argparse.Namespace) -> int:
    from . import batch
    from .. import params

    executor = _executor(args)
    if isinstance(executor, str):
        print(f"error: {executor}", file=sys.stderr)
        return 2
    jobs = batch.plan(args.profile, args.ids, params_dir=args.params_dir, notebooks_dir=args.notebooks_dir,
                      overrides=params.parse_overrides(args.set))
    print(f"{len(jobs)} run(s) planned for profile {args.profile}")
    from tqdm.contrib.logging import logging_redirect_tqdm

    if not args.verbose:  # papermill logs three INFO lines per notebook; the bar and one line per run say enough
        logging.getLogger("papermill").setLevel(logging.WARNING)
    with logging_redirect_tqdm():  # log lines print above the progress bar instead of breaking it
        # Not a terminal (a log file, CI): no redrawn bar; the line logged per finished run says enough.
        outcomes = batch.run_batch(jobs, progress=not args.quiet and sys.stderr.isatty(), rerun=args.rerun,
                                   executor=executor)
    print(batch.summary(outcomes))
    return 1 if any(o.status == "failed" for o in outcomes) else 0


NO_PDF = 4  # `report`'s exit status when the HTML was written and the PDF could not be made


def cmd_report(args: argparse.Namespace) -> int:
    from . import rendering

    out = rendering.render(args.profile, runs_dir=args.runs_dir, params_dir=args.params_dir,
                           notebooks_dir=args.notebooks_dir, out_dir=args.out)
    print(f"report: {out['html']}")
    if out["pdf"] is None:
        print(out["pdf_problem"], file=sys.stderr)
        return NO_PDF
    print(f"pdf: {out['pdf']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    ap = argparse.ArgumentParser(prog="python -m foodcnn", description=__doc__)
    ap.add_argument("--version", action="version", version=f"foodcnn {__version__}")
    ap.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = ap.add_subparsers(dest="command", required=True)

    d = sub.add_parser("data", help="make, fetch (Food-101 + ImageNet weights, needs internet) or check a dataset",
                       description="check: decode every image a Food-101 tree lists and print its classes, images "
                                   "per split and class, sizes, colour modes, unreadable files and whether it is "
                                   "synthetic (exit status 1 when some listed image is unreadable or missing)")
    d.add_argument("action", choices=["synth", "fetch", "check"])
    d.add_argument("--out", default="data",
                   help="the food-101 folder or the folder that holds (or will hold) it (default: data)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--num-classes", type=int, default=20)
    d.add_argument("--train-per-class", type=int, default=40)
    d.add_argument("--test-per-class", type=int, default=25)
    d.add_argument("--max-side", type=int, default=128)
    d.set_defaults(fn=cmd_data)

    r = sub.add_parser("run", help="train and test one experiment (a params YAML file)")
    r.add_argument("params", help="e.g. params/b_custom3.yaml")
    r.add_argument("--profile", help="profile overlay: demo, paper, tiny, or a YAML path")
    r.add_argument("--out", help="run directory (default: <runs_dir>/<profile>/<id>/seed<seed>)")
    r.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint (last.pt)")
    r.add_argument("--rerun", action="store_true",
                   help="train again even when the directory holds a finished run (replaced only once the new run is complete)")
    r.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a parameter (YAML value)")
    r.set_defaults(fn=cmd_run)

    b = sub.add_parser("batch", help="run catalogue rows through their notebooks (papermill); resumes by default")
    b.add_argument("ids", nargs="*", help="experiment ids (default: every params/*.yaml)")
    b.add_argument("--profile", default="demo", help="profile overlay (default: demo)")
    b.add_argument("--rerun", action="store_true", help="run again even when a finished run has the same parameters")
    b.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a parameter in every row")
    b.add_argument("-j", "--jobs", type=int, default=None,
                   help="notebooks run at a time, each kernel with an equal share of the CPU threads and, while there "
                        "are GPUs enough, a GPU of its own (default: one per visible GPU; without one, 2 where there are 2 cores or more)")
    b.add_argument("--executor", choices=["thread", "ray"], default="thread",
                   help="thread: kernels on this machine; ray: one Ray task per run, a GPU each (pip install -e .[ray])")
    b.add_argument("--ray-address", metavar="ADDRESS",
                   help="join this Ray cluster (e.g. auto, or ray://head:10001); default: start a local Ray instance")
    b.add_argument("--params-dir", default="params")
    b.add_argument("--notebooks-dir", default="notebooks")
    b.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    b.set_defaults(fn=cmd_batch)

    rp = sub.add_parser("report", help="aggregate a profile's runs and render reports/foodcnn-<profile>.html and .pdf",
                        description=f"exit status 0: HTML and PDF written; {NO_PDF}: HTML written, no PDF (one line "
                                    "says why and what to install)")
    rp.add_argument("--profile", default="demo")
    rp.add_argument("--runs-dir", default="runs")
    rp.add_argument("--params-dir", default="params")
    rp.add_argument("--notebooks-dir", default="notebooks")
    rp.add_argument("--out", default="reports")
    rp.set_defaults(fn=cmd_report)

    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from ..checkpoints import CheckpointError
    from ..data.subsets import BadImageError
    from ..data.layout import DatasetError
    from ..params import ParamsError
    from ..models.pretrained import WeightsUnavailable
    from ..results.runs import ResultError

    try:
        return args.fn(args)
    except (ParamsError, DatasetError, BadImageError, WeightsUnavailable, CheckpointError, ResultError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; resume with --resume", file=sys.stderr)
        return 130
