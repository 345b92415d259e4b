"""What the server commands share: where the server comes from, job names, and held Ctrl-Cs."""

from __future__ import annotations

import os
import signal
import time

import pytest

from edgegrad.cli.remote import HeldInterrupts, job_name, server_address
from edgegrad.errors import InvalidInput


def _ctrl_c() -> None:
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.05)  # the handler runs in the main thread, between bytecodes


def test_a_first_ctrl_c_is_held_until_the_block_ends_a_second_one_interrupts_at_once():
    reached = []
    with HeldInterrupts(reraise=False) as held:
        _ctrl_c()
        reached.append(1)
    assert held.pending and reached == [1]
    with pytest.raises(KeyboardInterrupt):
        with HeldInterrupts():
            _ctrl_c()
            reached.append(2)
    assert reached == [1, 2]
    with pytest.raises(KeyboardInterrupt):
        with HeldInterrupts(reraise=False):
            _ctrl_c()
            _ctrl_c()
            reached.append(3)
    assert reached == [1, 2]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_server_from_the_flag_or_the_environment(monkeypatch):
    monkeypatch.delenv("EDGEGRAD_SERVER", raising=False)
    with pytest.raises(InvalidInput, match="--server: required"):
        server_address(None)
    monkeypatch.setenv("EDGEGRAD_SERVER", " h:1 ")
    assert server_address(None) == "h:1" and server_address("other:2") == "other:2"
    monkeypatch.setenv("EDGEGRAD_SERVER", " ")
    with pytest.raises(InvalidInput, match="EDGEGRAD_SERVER: expected HOST:PORT"):
        server_address(None)


def test_job_names_with_or_without_the_prefix():
    assert job_name("abc") == job_name("jobs/abc") == "jobs/abc"
    with pytest.raises(InvalidInput, match="NAME"):
        job_name(" ")


@pytest.mark.parametrize("target", ["h:1", "localhost:50051", "10.0.0.1:443", "[::1]:50051", "unix:/tmp/e.sock",
                                    "unix:///tmp/e.sock", "unix-abstract:edgegrad", "dns:///example.com:50051",
                                    "ipv4:127.0.0.1:5", "grpcs://example.com:443", "http://h:80/"])
def test_every_grpc_target_form_is_taken(target):
    assert server_address(target) == target


@pytest.mark.parametrize("target", ["garbage", "h:", ":50051", "h:port", "h:70000", "h:0", "a b:1", "::1:50051",
                                    "[::1]", "[]:1", "h/x:1"])
def test_a_server_that_is_no_grpc_target_is_bad_input_naming_the_forms(target, monkeypatch):
    with pytest.raises(InvalidInput, match=r"^--server: expected HOST:PORT, \[IPV6\]:PORT, unix:PATH"):
        server_address(target)
    monkeypatch.setenv("EDGEGRAD_SERVER", target)
    with pytest.raises(InvalidInput, match=r"^EDGEGRAD_SERVER: expected HOST:PORT"):
        server_address(None)
