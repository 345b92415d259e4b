"""Writing a result from its chunks, in any order, interrupted and continued: .npz and folders of .npy."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

import edgegrad
from edgegrad import Network
from edgegrad.cli.resultfiles import PROGRESS_NAME, ResultWriter, check_out, data_dir
from edgegrad.errors import InvalidInput
from edgegrad.wire.chunking import result_chunks, result_layout

ROOT = Path(__file__).resolve().parent.parent
XOR = Network.load(str(ROOT / "examples" / "xor.json"))
CHUNK_BYTES = 512  # many small chunks, some splitting rows


def _job(loss: str | None, per_example: bool = False, batch: int = 300):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(batch, len(XOR.inputs)))
    t = (rng.random(size=(batch, len(XOR.outputs))) > 0.5).astype(float) if loss else None
    res = edgegrad.gradients(XOR, x, targets=t, loss=loss, per_example=per_example)
    layout = result_layout(XOR, batch, loss, per_example, "float64", CHUNK_BYTES)
    chunks = list(result_chunks(res, layout))
    assert len(chunks) == layout.chunk_count > 10
    return res, layout, chunks


def _arrays(out: Path) -> dict[str, np.ndarray]:
    if out.suffix == ".npz":
        with np.load(out) as z:
            return {k: z[k] for k in z.files}
    return {p.stem: np.load(p, mmap_mode="r") for p in out.glob("*.npy")}


def _assert_equal(arrays: dict[str, np.ndarray], res) -> None:
    np.testing.assert_array_equal(arrays["outputs"], res.outputs)
    np.testing.assert_array_equal(arrays["edge_grads"], res.edge_grads)
    np.testing.assert_array_equal(arrays["deltas"], res.deltas)
    if res.loss is None:
        assert "loss" not in arrays
    else:
        assert float(arrays["loss"]) == res.loss


@pytest.mark.parametrize("name", ["r.npz", "folder"])
@pytest.mark.parametrize("mode", [(None, False), ("mse", False), ("bce", True)])
def test_chunks_in_any_order_interrupted_and_continued(tmp_path, name, mode):
    res, layout, chunks = _job(*mode)
    random.Random(3).shuffle(chunks)  # shards finish in any order
    out = str(tmp_path / name)
    labels = {"edges": np.array(XOR.edge_pairs(), dtype=str), "nodes": np.array(XOR.node_ids, dtype=str)}
    first = ResultWriter.open(out, "jobs/a", layout, labels)
    half = len(chunks) // 2
    for chunk in chunks[:half]:
        assert first.add(chunk)
    first.close()
    record = json.loads((Path(data_dir(out)) / PROGRESS_NAME).read_text())
    assert record["job"] == "jobs/a" and record["through"] + len(record["extra"]) == half

    again = ResultWriter.open(out, "jobs/a", layout)  # `jobs watch` continues: no labels needed
    assert again.resumed and again.chunks_done == half and not again.complete
    for chunk in chunks:  # a re-sent chunk is recognised and not counted twice
        again.add(chunk)
    assert again.complete and again.rows_done == layout.batch
    again.finish(res.loss)
    arrays = _arrays(Path(out))
    _assert_equal(arrays, res)
    assert arrays["edges"].tolist() == XOR.edge_pairs() and arrays["nodes"].tolist() == list(XOR.node_ids)
    assert not Path(data_dir(out), PROGRESS_NAME).exists()
    if name.endswith(".npz"):
        assert not Path(data_dir(out)).exists()
        assert sorted(arrays) == sorted(["outputs", "edge_grads", "deltas", "edges", "nodes"]
                                        + (["loss"] if mode[0] else []))


def test_a_record_of_another_job_or_layout_starts_afresh(tmp_path):
    res, layout, chunks = _job("mse")
    out = str(tmp_path / "r")
    w = ResultWriter.open(out, "jobs/old", layout)
    for chunk in chunks[:5]:
        w.add(chunk)
    w.close()
    fresh = ResultWriter.open(out, "jobs/new", layout)
    assert not fresh.resumed and fresh.chunks_done == 0
    for chunk in chunks:
        fresh.add(chunk)
    fresh.finish(res.loss)
    _assert_equal(_arrays(Path(out)), res)


def test_unfinished_or_discarded_results(tmp_path):
    res, layout, chunks = _job(None)
    out = str(tmp_path / "r.npz")
    w = ResultWriter.open(out, "jobs/a", layout)
    w.add(chunks[0])
    with pytest.raises(ValueError, match="of .* chunks written"):
        w.finish(None)
    w.discard()
    assert list(tmp_path.iterdir()) == []
    folder = tmp_path / "f"
    w = ResultWriter.open(str(folder), "jobs/a", layout)
    w.add(chunks[0])
    w.discard()
    assert not folder.exists()


def test_bad_chunks_and_bad_out_names(tmp_path):
    res, layout, chunks = _job(None)
    w = ResultWriter.open(str(tmp_path / "r"), "jobs/a", layout)
    bad = type(chunks[0])()
    bad.CopyFrom(chunks[0])
    bad.stop = bad.start + 10**9
    with pytest.raises(ValueError, match="bad range"):
        w.add(bad)
    w.discard()
    (tmp_path / "file").write_text("x")
    (tmp_path / "dir.npz").mkdir()
    for out, message in [(tmp_path / "no" / "r.npz", "cannot write"), (tmp_path / "file", "not a folder"),
                         (tmp_path / "dir.npz", "is a folder")]:
        with pytest.raises(InvalidInput, match=message):
            check_out(str(out))


def test_rows_done_is_the_share_of_the_per_row_fields_received():
    from edgegrad.cli.resultfiles import RowProgress

    res, layout, chunks = _job("bce", per_example=True)  # outputs, then edge_grads, then deltas: all per row
    progress = RowProgress(layout)
    rows = [progress.add(chunk) for chunk in chunks]
    assert rows == sorted(rows) and rows[-1] == layout.batch
    outputs_only = sum(1 for c in chunks if c.field == chunks[0].field)
    assert rows[outputs_only - 1] == layout.batch // 10  # all outputs in: 1 of the 10 values per row (1+6+3)

    res, layout, chunks = _job("mse")  # reduced loss mode: edge_grads and deltas are not per row
    progress = RowProgress(layout)
    assert [progress.add(c) for c in chunks][-1] == layout.batch
    assert RowProgress(layout, {chunks[0].field: 30}).rows == 30
