"""``edgegrad grad NET [NET ...]`` and ``edgegrad batch NET [NET ...]``: several networks (or folders of them),
one population call: in-process ``gradients_many``, or one population job through a server."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import numpy as np

from ..errors import EdgegradError, InvalidInput
from ..v1 import job_pb2
from .common import load_batch, show_engine_notices
from .io import dumps_result, result_labels, result_to_dict
from .remote import HeldInterrupts, cancel_on_interrupt, connect, job_failure, say

__all__ = ["network_paths", "is_population", "grad_many", "batch_many", "NETWORK_SUFFIXES"]

#: files a folder given as NET contributes, in sorted file-name order
NETWORK_SUFFIXES = (".json", ".npz")


def network_paths(values: list[str]) -> list[str]:
    """The network files of NET arguments, in argument order; a folder means its *.json and *.npz, sorted."""
    paths: list[str] = []
    for value in values:
        if os.path.isdir(value):
            found = sorted(name for name in os.listdir(value) if name.lower().endswith(NETWORK_SUFFIXES)
                           and os.path.isfile(os.path.join(value, name)))
            if not found:
                raise InvalidInput(f"{value}: a folder with no network (*.json or *.npz) in it")
            paths += [os.path.join(value, name) for name in found]
        else:
            paths.append(value)
    return paths


def is_population(values: list[str]) -> bool:
    """Whether the NET arguments make a population (several, or a folder) rather than one network."""
    return len(values) > 1 or any(os.path.isdir(v) for v in values)


def _load(values: list[str], args: argparse.Namespace) -> tuple[list[Any], Any, Any]:
    from ..model.network import Network

    nets = [Network.load(path) for path in network_paths(values)]
    x, t = load_batch(args, nets[0])   # shared rows; every network is checked against them
    return nets, x, t


def grad_many(args: argparse.Namespace, server: str | None, options: dict[str, Any]) -> int:
    """``grad`` of several networks: a JSON list, one result object per network, in argument order."""
    if args.out is not None and not args.out.lower().endswith(".json"):
        raise InvalidInput(f"{args.out}: with several networks --out takes a .json file (a list of results)")
    nets, x, t = _load(args.network, args)
    if server is None:
        from ..engine.population import gradients_many

        show_engine_notices()
        results = gradients_many(nets, x, t, dtype=args.dtype, **options)
    else:
        with connect(server) as client:
            held = HeldInterrupts(reraise=False)
            with held:
                handle = client.submit_population(nets, x, t, dtype=args.dtype, **options)
            try:
                if held.pending:
                    raise KeyboardInterrupt
                results = handle.result()
            except KeyboardInterrupt:
                cancel_on_interrupt(client, handle.name)
                raise
    text = _json_list(nets, results, args.indent)
    if args.out is not None:
        try:
            with open(args.out, "w", encoding="utf-8") as fh:
                fh.write(text + "\n")
        except OSError as exc:
            raise InvalidInput(f"{args.out}: cannot write ({exc.strerror or exc})") from None
    else:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    return 0


def _json_list(nets: list[Any], results: list[Any], indent: int | None) -> str:
    if indent is None:
        import json

        return json.dumps([result_to_dict(n, r) for n, r in zip(nets, results)], allow_nan=False,
                          separators=(",", ":"))
    pad = " " * indent
    items = [pad + dumps_result(n, r, indent).replace("\n", "\n" + pad) for n, r in zip(nets, results)]
    return "[\n" + ",\n".join(items) + "\n]"


def batch_many(args: argparse.Namespace, server: str, options: dict[str, Any]) -> int:
    """``batch`` of several networks: one population job; network i's result goes to OUT/<i>/ as its shard arrives."""
    if args.out.lower().endswith(".npz"):
        raise InvalidInput(f"{args.out}: with several networks --out is a folder (OUT/<i>/ per network)")
    nets, x, t = _load(args.network, args)
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as exc:
        raise InvalidInput(f"{args.out}: cannot write ({exc.strerror or exc})") from None
    with connect(server) as client:
        job = client.submit_population(nets, x, t, **options)
        say(f"submitted {job.name} ({len(nets):,} networks)")
        try:
            for index, res in job.results():
                _save_folder(os.path.join(args.out, str(index)), nets[index], res)
        except KeyboardInterrupt:
            cancel_on_interrupt(client, job.name)
            raise
        except EdgegradError:
            if job.job is not None and job.job.state == job_pb2.JOB_STATE_FAILED:
                raise job_failure(job.job) from None
            raise
        final = job.job
        assert final is not None
        if final.state != job_pb2.JOB_STATE_SUCCEEDED:  # cancelled: the networks that arrived are written
            raise job_failure(final)
    say(f"{final.name}: succeeded, {len(nets):,} networks; results in {args.out}/<i>/")
    return 0


def _save_folder(folder: str, net: Any, res: Any) -> None:
    """One network's result as a single network's folder output: a .npy per field, loss, edges and nodes."""
    try:
        os.makedirs(folder, exist_ok=True)
        arrays = {"outputs": res.outputs, "edge_grads": res.edge_grads, "deltas": res.deltas, **result_labels(net)}
        if res.norms is not None:
            arrays["norms"] = res.norms
        if res.loss is not None:
            arrays["loss"] = np.array(float(res.loss))
        for name, values in arrays.items():
            np.save(os.path.join(folder, f"{name}.npy"), np.asarray(values))
    except OSError as exc:
        raise InvalidInput(f"{folder}: cannot write ({exc.strerror or exc})") from None
