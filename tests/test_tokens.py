"""Token files (``TENANT TOKEN`` lines) and tenant names, without a server."""

from __future__ import annotations

import pytest

from edgegrad.errors import InvalidInput
from edgegrad.jobs.tenants import DEFAULT_TENANT, check_tenant
from edgegrad.server.auth import Authenticator, load_tokens, parse_token_lines
from edgegrad.settings import Settings


def test_lines_are_tenant_then_token_and_one_field_is_a_default_token() -> None:
    lines = ["# tokens of the team\n", "\n", "alice   a-token-1\n", "bob\tb.token # rotated in May\n",
             "  legacy-token  \n", "alice a-token-2\n", "#bob old-token\n"]
    assert parse_token_lines(lines, "tokens") == {"a-token-1": "alice", "b.token": "bob",
                                                 "legacy-token": DEFAULT_TENANT, "a-token-2": "alice"}


@pytest.mark.parametrize("line, says", [
    ("alice a b\n", "tokens:2: expected 'TENANT TOKEN' or 'TOKEN', got 3 fields"),
    ("ali:ce tok\n", "tokens:2: a tenant name is"),
    ("* tok\n", "tokens:2: a tenant name is"),
    (f"{'t' * 65} tok\n", "tokens:2: a tenant name is"),
    ("bob shared\n", "tokens:2: this token is already given to tenant 'alice'"),
])
def test_bad_lines_are_refused_naming_the_line(line: str, says: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_token_lines(["alice shared\n", line], "tokens")
    assert err.value.message.startswith(says)


def test_auth_token_is_tenant_default_and_joins_the_file(tmp_path) -> None:
    path = tmp_path / "tokens"
    path.write_text("alice a1\nbob b1\n")
    tokens = load_tokens(Settings(auth_token="plain", auth_token_file=str(path)))
    assert tokens == {"a1": "alice", "b1": "bob", "plain": DEFAULT_TENANT}
    assert load_tokens(Settings(auth_token="plain")) == {"plain": DEFAULT_TENANT}
    assert load_tokens(Settings()) == {}


def test_a_token_file_without_tokens_or_unreadable_is_an_error(tmp_path) -> None:
    path = tmp_path / "tokens"
    path.write_text("# nothing yet\n\n")
    for name in (str(path), str(tmp_path / "missing")):
        with pytest.raises(InvalidInput) as err:
            load_tokens(Settings(auth_token_file=name))
        assert err.value.message.startswith("EDGEGRAD_AUTH_TOKEN_FILE: ")
    path.write_text("bob plain\n")
    with pytest.raises(InvalidInput, match="also tenant 'bob'"):
        load_tokens(Settings(auth_token="plain", auth_token_file=str(path)))


def test_the_authenticator_finds_the_tenant_of_a_bearer_token() -> None:
    auth = Authenticator({"a1": "alice", "plain": DEFAULT_TENANT})
    assert auth.enabled
    assert auth.tenant((("authorization", "Bearer a1"),)) == "alice"
    assert auth.tenant((("x-other", "1"), ("authorization", b"bearer plain "))) == DEFAULT_TENANT
    for metadata in (None, (), (("authorization", "Bearer a2"),), (("authorization", "a1"),),
                     (("authorization", "Basic a1"),)):
        assert auth.tenant(metadata) is None
    assert not Authenticator({}).enabled and Authenticator({}).tenant(None) == DEFAULT_TENANT


@pytest.mark.parametrize("name", ["", ":", "a:b", "a*", "a b", "-a", ".a", "é", "a\n", "t" * 65, "a{b}"])
def test_tenant_names_that_could_reach_a_key_separator_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput, match="tenant: a tenant name is"):
        check_tenant(name)


@pytest.mark.parametrize("name", ["default", "a", "Team-7", "x.y_z", "0", "t" * 64])
def test_tenant_names(name: str) -> None:
    assert check_tenant(name) == name
