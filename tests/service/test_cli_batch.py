"""``edgegrad batch`` and ``edgegrad jobs`` as real processes against a real server with real workers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import NAME, XOR, XOR_PATH, assert_matches_in_process, edgegrad_cli, load_result, start_cli, xor_batch
from redis_process import free_port

from edgegrad.cli.resultfiles import ResultWriter
from edgegrad.client import Client

MODES = {
    "output": {},
    "mse": {"loss": "mse"},
    "bce-per-example-sum": {"loss": "bce", "per_example": True, "reduction": "sum"},
}


def _flags(options: dict) -> list[str]:
    flags = []
    if "loss" in options:
        flags += ["--loss", options["loss"]]
    if options.get("per_example"):
        flags.append("--per-example")
    if "reduction" in options:
        flags += ["--reduction", options["reduction"]]
    return flags


@pytest.mark.parametrize("out_name", ["result.npz", "result"])
@pytest.mark.parametrize("mode", list(MODES))
def test_batch_writes_what_in_process_gradients_computes(cluster, tmp_path, mode, out_name):
    options = MODES[mode]
    xp, tp, x, t = xor_batch(tmp_path, 3000)
    out = tmp_path / out_name
    args = ["batch", XOR_PATH, "--inputs", xp, "--out", str(out), *_flags(options)]
    if "loss" in options:
        args += ["--targets", tp]
    # the server from the command line, or from EDGEGRAD_SERVER
    proc = (edgegrad_cli(*args, "--server", cluster.address) if out.suffix else
            edgegrad_cli(*args, EDGEGRAD_SERVER=cluster.address))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert re.fullmatch(r"submitted jobs/\S+ \(3,000 rows\)", lines[0]), lines
    assert "succeeded, 3,000 rows" in lines[-1] and str(out) in lines[-1]
    arrays = load_result(out)
    assert_matches_in_process(arrays, XOR, x, **({"targets": t} if "loss" in options else {}), **options)
    if out.suffix:
        assert not Path(f"{out}.part").exists()
    else:
        assert sorted(p.name for p in out.iterdir()) == sorted(
            ["outputs.npy", "edge_grads.npy", "deltas.npy", "edges.npy", "nodes.npy"]
            + (["loss.npy"] if "loss" in options else []))


def test_jobs_list_show_delete(cluster, tmp_path):
    xp, tp, x, t = xor_batch(tmp_path, 500, seed=1)
    done = edgegrad_cli("batch", XOR_PATH, "--inputs", xp, "--targets", tp, "--loss", "mse",
                        "--out", str(tmp_path / "r.npz"), "--server", cluster.address)
    assert done.returncode == 0, done.stderr
    name = NAME.search(done.stderr).group(1)
    server = ["--server", cluster.address]

    shown = edgegrad_cli("jobs", "show", name, "--json", *server)
    assert shown.returncode == 0, shown.stderr
    job = json.loads(shown.stdout)
    assert job["name"] == name and job["state"] == "succeeded" and job["layout"]["batch"] == "500"
    with np.load(tmp_path / "r.npz") as z:
        assert job["loss"] == float(z["loss"])
    text = edgegrad_cli("jobs", "show", name.split("/")[1], *server)  # a bare id is fine too
    assert text.returncode == 0 and f"name:     {name}" in text.stdout and "state:    succeeded" in text.stdout

    listed = edgegrad_cli("jobs", "list", "--state", "succeeded", "--json", *server)
    assert listed.returncode == 0, listed.stderr
    jobs = json.loads(listed.stdout)
    assert name in [j["name"] for j in jobs] and {j["state"] for j in jobs} == {"succeeded"}
    assert name not in [j["name"] for j in json.loads(edgegrad_cli("jobs", "list", "--state", "failed", "--json",
                                                                   *server).stdout)]
    table = edgegrad_cli("jobs", "list", *server)
    assert table.returncode == 0 and table.stdout.startswith("NAME") and re.search(
        rf"^{re.escape(name)}\s+succeeded\s+500\s", table.stdout, re.M), table.stdout

    watched = edgegrad_cli("jobs", "watch", name, *server)
    assert watched.returncode == 0 and watched.stderr == f"{name}: succeeded, 500 rows\n", watched.stderr

    deleted = edgegrad_cli("jobs", "delete", name, *server)
    assert deleted.returncode == 0 and deleted.stdout == f"{name}: deleted\n", deleted.stderr
    gone = edgegrad_cli("jobs", "show", name, *server)
    assert gone.returncode == 2 and gone.stdout == "" and len(gone.stderr.splitlines()) == 1
    assert gone.stderr.startswith(f"error: server {cluster.address}: ") and name in gone.stderr


@pytest.mark.parametrize("out_name", ["r.npz", "r"])
def test_jobs_watch_continues_a_partial_file(cluster, tmp_path, out_name):
    """Half the chunks written (then the writer stops, as a detached batch does); watch writes the rest."""
    xp, tp, x, t = xor_batch(tmp_path, 20_000, seed=2)
    out = str(tmp_path / out_name)
    with Client(cluster.address) as client:
        handle = client.submit(XOR, x, targets=t, loss="bce", per_example=True)
        layout = handle.job.layout
        assert layout.chunk_count > 10
        labels = {"edges": np.array(XOR.edge_pairs(), dtype=str), "nodes": np.array(XOR.node_ids, dtype=str)}
        writer = ResultWriter.open(out, handle.name, layout, labels)
        stream = client.job(handle.name, assemble=False)
        for chunk in stream.chunks():
            writer.add(chunk)
            if writer.chunks_done == layout.chunk_count // 2:
                break
        writer.close()
    watched = edgegrad_cli("jobs", "watch", handle.name, "--out", out, "--server", cluster.address)
    assert watched.returncode == 0, watched.stderr
    half = layout.chunk_count // 2
    assert f"continuing {out} after {half} of {layout.chunk_count} chunks" in watched.stderr
    assert_matches_in_process(load_result(Path(out)), XOR, x, targets=t, loss="bce", per_example=True)


def test_bad_input_is_exit_2_before_anything_is_submitted(cluster, tmp_path):
    xp, tp, x, t = xor_batch(tmp_path, 10)
    bad_t = tmp_path / "bad.npy"
    np.save(bad_t, np.full((10, 1), 2.0))
    server = ["--server", cluster.address]
    cases = [
        (["batch", XOR_PATH, "--inputs", xp, "--targets", str(bad_t), "--loss", "bce", "--out",
          str(tmp_path / "r.npz"), *server], "targets[0][0]: bce needs targets in [0, 1]"),
        (["batch", XOR_PATH, "--inputs", xp, "--out", str(tmp_path / "no" / "r.npz"), *server], f"{tmp_path}"),
        (["batch", XOR_PATH, "--inputs", xp, "--shard-rows", "0", "--out", "r.npz", *server],
         "--shard-rows: must be between 1 and"),
        (["batch", XOR_PATH, "--inputs", xp, "--out", str(tmp_path / "r.npz")], "--server: required"),
        (["batch", XOR_PATH, "--inputs", xp, *server], "the following arguments are required: --out"),
        (["jobs", "show", "jobs/" + "0" * 26, *server], f"server {cluster.address}: "),
        (["jobs", "show", "jobs/nosuchjob", *server], "name: expected a job name"),
        (["jobs", "cancel", "", *server], "NAME: expected a job name"),
    ]
    for args, expected in cases:
        proc = edgegrad_cli(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stdout == "" and len(proc.stderr.splitlines()) == 1, proc.stderr
        assert proc.stderr.startswith("error: ") and expected in proc.stderr, proc.stderr
    assert not list(tmp_path.glob("r.npz*"))


def test_an_unreachable_server_is_exit_3(tmp_path):
    xp, tp, x, t = xor_batch(tmp_path, 10)
    address = f"127.0.0.1:{free_port()}"
    commands = [["batch", XOR_PATH, "--inputs", xp, "--out", str(tmp_path / "r.npz"), "--server", address],
                ["jobs", "list", "--server", address],
                ["grad", XOR_PATH, "--inputs", xp, "--server", address]]
    procs = [start_cli(*args) for args in commands]
    for proc in procs:  # side by side: each waits out its few seconds of retries
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 3, err
        assert out == "" and len(err.splitlines()) == 1 and err.startswith(f"error: server {address}: unreachable")
    assert not list(tmp_path.glob("r.npz*"))
