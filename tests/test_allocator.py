"""The CPU malloc tuning (allocator.py): on by default for CPU runs, off with FOODCNN_MALLOC=default."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from conftest import REPO

glibc_only = pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                                reason="the tuning applies to glibc's malloc only")

SCRIPT = """
import json, sys
from foodcnn.training import allocator
from foodcnn import params
from foodcnn.training import train
p = params.from_mapping(json.loads(sys.argv[1]), source="<test>")
train.run(p)
print("applied" if allocator.applied() else "untouched")
"""


def _run(tiny_params, env_value):
    p = tiny_params(epochs=1)
    import json

    mapping = {k: getattr(p, k) for k in ("id", "model", "data_root", "num_classes", "image_size", "epochs",
                                          "batch_size", "progress", "runs_dir", "cache_dir", "pretrained")}
    env = {k: v for k, v in os.environ.items() if k != "FOODCNN_MALLOC"}
    if env_value is not None:
        env["FOODCNN_MALLOC"] = env_value
    env["PYTHONPATH"] = str(REPO / "lib")
    out = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(mapping)], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]


@glibc_only
def test_a_cpu_run_keeps_freed_memory_in_the_heap(tiny_params):
    assert _run(tiny_params, None) == "applied"


def test_foodcnn_malloc_default_leaves_malloc_alone(tiny_params):
    assert _run(tiny_params, "default") == "untouched"
