"""Tenant names: who owns a job. A name becomes part of Redis keys, so only safe names pass."""

from __future__ import annotations

import re

from ..errors import InvalidInput

__all__ = ["DEFAULT_TENANT", "MAX_TENANT_LENGTH", "check_tenant"]

#: the tenant of EDGEGRAD_AUTH_TOKEN, of one-field token file lines, and of everyone without auth
DEFAULT_TENANT = "default"
#: longest tenant name
MAX_TENANT_LENGTH = 64

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def check_tenant(name: str, place: str = "tenant") -> str:
    """``name`` if it is a tenant name (letters, digits, '_', '.', '-'; 1-64, starting with a letter or
    digit), else InvalidInput naming ``place``: no ':' or glob character can reach a key."""
    if not isinstance(name, str) or len(name) > MAX_TENANT_LENGTH or not _NAME.fullmatch(name):
        shown = name if isinstance(name, str) and len(name) <= MAX_TENANT_LENGTH else f"{str(name)[:MAX_TENANT_LENGTH]}..."
        raise InvalidInput(f"{place}: a tenant name is 1-{MAX_TENANT_LENGTH} letters, digits, '_', '.' or '-',"
                           f" starting with a letter or digit; got {shown!r}")
    return name
