"""The progress display of ``edgegrad batch`` / ``jobs watch``: a bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import io

from edgegrad.cli import progress as cli_progress
from edgegrad.cli.progress import Progress, format_seconds


def test_a_terminal_gets_one_redrawn_bar_with_rate_and_eta(monkeypatch):
    clock = iter([100.0, 102.0, 102.0, 104.0, 104.0])
    monkeypatch.setattr(cli_progress.time, "monotonic", lambda: next(clock))
    stream = io.StringIO()
    p = Progress("jobs/x", 1000, stream=stream, tty=True)
    p.update(250)
    p.update(500)
    p.end("jobs/x: succeeded")
    text = stream.getvalue()
    frames = text.split("\r")[1:]
    assert len(frames) == 2 and "\n" not in frames[0]
    assert frames[0] == "jobs/x [######..................] 250/1,000 rows (25%)  125 rows/s  ETA 6.0s\x1b[K"
    assert frames[1].startswith("jobs/x [############............] 500/1,000 rows (50%)  125 rows/s  ETA 4.0s")
    assert text.endswith("\x1b[K\njobs/x: succeeded\n")


def test_no_terminal_gets_a_plain_line_now_and_then(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(cli_progress.time, "monotonic", lambda: now[0])
    stream = io.StringIO()
    p = Progress("jobs/x", 100, done=40, stream=stream, tty=False)
    for t, done in [(1.0, 50), (2.0, 60), (5.5, 70), (6.0, 80)]:
        now[0] = t
        p.update(done)
    p.end()
    assert stream.getvalue() == "jobs/x: 70/100 rows (70%)  5 rows/s  ETA 5.5s\n"  # rate: this session's rows


def test_format_seconds():
    assert [format_seconds(s) for s in (0.04, 9.9, 42, 185, 7260)] == ["0.0s", "9.9s", "42s", "3m05s", "2h01m"]
