"""A worker with EDGEGRAD_THREADS gives BLAS no more threads than that (several workers share a host)."""

from __future__ import annotations

import subprocess
import sys


def test_a_worker_limits_blas_to_its_engine_threads() -> None:
    code = ("import os; os.environ['EDGEGRAD_THREADS'] = '1'\n"
            "import numpy, threadpoolctl\n"
            "from edgegrad.worker.main import limit_blas_threads\n"
            "limit_blas_threads()\n"
            "print(sorted({p['num_threads'] for p in threadpoolctl.threadpool_info() if p['user_api'] == 'blas'}))")
    env = {"OPENBLAS_NUM_THREADS": "2", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.strip() == "[1]"
