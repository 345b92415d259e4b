"""Timing helpers: repeated and paired wall-clock runs, peak traced memory, a torch baseline in a child process."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable

import numpy as np

__all__ = ["MiB", "fmt_time", "fmt_bytes", "measure", "paired", "peak_bytes", "PeerChild", "TorchChild", "serve_steps"]

MiB = 1024 * 1024
#: pause before each paired run, longer than OpenBLAS/OpenMP threads spin after their last call
SETTLE_SECONDS = 0.25


def fmt_time(seconds: float) -> str:
    """Seconds in a readable unit."""
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} µs"


def fmt_bytes(n: float) -> str:
    """Bytes in MiB."""
    return f"{n / MiB:,.0f} MiB" if n >= 10 * MiB else f"{n / MiB:,.2f} MiB"


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(fn: Callable[[], object], repeat: int, warmup: int = 1) -> list[float]:
    """Wall times of ``repeat`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        gc.collect()
        times.append(_timed(fn))
    return times


def paired(ours: Callable[[], object], theirs: Callable[[], float | None], rounds: int,
           warmup: int = 1, settle: float = SETTLE_SECONDS) -> tuple[list[float], list[float]]:
    """Alternate ``ours`` and ``theirs`` for ``rounds`` rounds (order flipped every round).

    Each round sees about the same machine load, so per-round ratios are fair even when other work
    comes and goes. ``theirs`` may return its own measured seconds (a child process's figure).
    Before each timed call we sleep ``settle`` seconds: OpenBLAS and OpenMP worker threads keep
    spinning for a while after a call and would otherwise steal the cores from the other side.
    """
    for _ in range(warmup):
        ours()
        theirs()
    a, b = [], []
    for i in range(rounds):
        gc.collect()
        for which in ((0, 1) if i % 2 == 0 else (1, 0)):
            time.sleep(settle)
            if which == 0:
                a.append(_timed(ours))
            else:
                start = time.perf_counter()
                reported = theirs()
                b.append(reported if isinstance(reported, float) else time.perf_counter() - start)
    return a, b


def peak_bytes(fn: Callable[[], object]) -> int:
    """Peak traced memory (numpy buffers included) allocated during one call, above what was live before."""
    gc.collect()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        result = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del result
    return peak - before


def serve_steps(step: Callable[[], object], grads: Callable[[], np.ndarray], info: dict, warmup: int,
                stdin, stdout) -> None:
    """A peer child's command loop: a ready line with ``info``, then ``run`` (time one step) / ``grads PATH``."""
    for _ in range(warmup):
        step()
    print(json.dumps({"ready": True, **info}), file=stdout, flush=True)
    for line in stdin:
        command, _, arg = line.strip().partition(" ")
        if command == "run":
            start = time.perf_counter()
            step()
            answer: dict = {"seconds": time.perf_counter() - start}
        elif command == "grads":
            np.save(arg, grads())
            answer = {"saved": arg}
        else:
            answer = {"error": f"unknown command {command!r}"}
        print(json.dumps(answer), file=stdout, flush=True)


class PeerChild:
    """``python -m benchmarks.<module> SPEC ...`` (a peer framework) in a child process, driven one step at a time.

    Use as a context manager; ``info`` holds the child's ready line (kind, threads, version).
    """

    module = "benchmarks.torch_baseline"

    def __init__(self, spec: dict, batch: int, seed: int, warmup: int = 1, mode: str | None = None,
                 module: str | None = None) -> None:
        self.module = module or self.module
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
        cmd = [sys.executable, "-m", self.module, json.dumps(spec), "--batch", str(batch),
               "--seed", str(seed), "--warmup", str(warmup)] + (["--mode", mode] if mode else [])
        self._stderr = tempfile.TemporaryFile(mode="w+")
        self._proc = subprocess.Popen(cmd, cwd=root, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=self._stderr, text=True)
        try:
            self.info: dict = self._read()
        except BaseException:
            self.close()
            raise

    def _read(self) -> dict:
        line = self._proc.stdout.readline() if self._proc.stdout else ""
        if not line:
            self._proc.wait()
            self._stderr.seek(0)
            last = (self._stderr.read().strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"{self.module} child exited {self._proc.returncode}: {last}")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"{self.module} child: {answer['error']}")
        return answer

    def _ask(self, command: str) -> dict:
        assert self._proc.stdin is not None
        self._proc.stdin.write(command + "\n")
        self._proc.stdin.flush()
        return self._read()

    def run(self) -> float:
        """One timed step in the child; its own measured seconds."""
        return float(self._ask("run")["seconds"])

    def edge_grads(self) -> np.ndarray:
        """The child's edge gradients, in file order."""
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "torch_edge_grads.npy")
            self._ask(f"grads {path}")
            return np.load(path)

    def close(self) -> None:
        """End the child (closing its stdin ends its command loop)."""
        if self._proc.stdin:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._proc.stdout:
            self._proc.stdout.close()
        self._stderr.close()

    def __enter__(self) -> PeerChild:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TorchChild(PeerChild):
    """``python -m benchmarks.torch_baseline`` in a child process."""

    module = "benchmarks.torch_baseline"
