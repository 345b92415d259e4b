"""The first compiled-kernel call of a fresh install says once that it compiles, and where the cache goes;
the command line shows that note on a terminal only."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest

from edgegrad.cli.common import show_engine_notices
from edgegrad.engine import kernelcache, numba_kernel

LOGGER = "edgegrad.engine.kernelcache"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture
def quiet_logger():
    logger = logging.getLogger(LOGGER)
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    yield logger
    logger.handlers[:] = handlers
    logger.setLevel(level)
    logger.propagate = propagate


def test_the_cache_is_found_where_numba_keeps_it(empty_cache: Path) -> None:
    assert kernelcache.cache_dir() == str(empty_cache) and not kernelcache.cached()
    index = empty_cache / "work" / "edgegrad" / "engine" / "numba_loops._forward_rows-157.py311.nbi"
    index.parent.mkdir(parents=True)
    index.write_bytes(b"")
    assert kernelcache.cached()


def test_the_first_load_without_a_cache_says_it_compiles_once(empty_cache: Path, monkeypatch: pytest.MonkeyPatch,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("numba")
    monkeypatch.setattr(kernelcache, "_loaded", {})
    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert numba_kernel.loops() is not None
        assert numba_kernel.loops() is not None
    notes = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert notes == [kernelcache.COMPILE_NOTICE.format(cache=str(empty_cache))]
    assert "compiling the engine's numba kernels" in notes[0]


def test_a_cached_install_says_nothing(empty_cache: Path, caplog: pytest.LogCaptureFixture) -> None:
    (empty_cache / "numba_loops._dot-147.py311.nbi").write_bytes(b"")
    with caplog.at_level(logging.INFO, logger=LOGGER):
        kernelcache.notice_if_uncached()
    assert not [r for r in caplog.records if r.name == LOGGER]


def test_the_command_line_shows_the_note_on_a_terminal_only(empty_cache: Path, quiet_logger: logging.Logger) -> None:
    piped = io.StringIO()
    assert not show_engine_notices(piped)
    kernelcache.notice_if_uncached()
    assert piped.getvalue() == ""
    terminal = _Terminal()
    assert show_engine_notices(terminal)
    kernelcache.notice_if_uncached()
    assert terminal.getvalue() == f"note: {kernelcache.COMPILE_NOTICE.format(cache=str(empty_cache))}\n"
