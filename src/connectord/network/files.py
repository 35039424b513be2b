"""The file-root policy: which local paths a tenant's probes may read.

Operators list roots (``CONNECTORD_FILE_ROOTS``); a root holding ``{tenant}``
gives each tenant a folder of its own. A path is judged after symlinks and
``..`` are resolved, and the server's data directory is never served, even
inside a root. ``file://`` folders and SQLite files both go through here.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from connectord.errors import ProbeError
from connectord.model import ErrorKind

#: In a file root, replaced by the tenant's id: each tenant gets a root of its own.
TENANT_PLACEHOLDER = "{tenant}"


def tenant_roots(roots: Iterable[str], tenant_id: str | None) -> tuple[str, ...]:
    """The roots a tenant's probes may use: ``{tenant}`` replaced by its id. A root with the
    placeholder is left out when no tenant is known; a root without it is shared."""
    return tuple(
        root.replace(TENANT_PLACEHOLDER, tenant_id) if tenant_id else root
        for root in roots
        if tenant_id or TENANT_PLACEHOLDER not in root
    )


def path_in_roots(path: str, roots: Sequence[str], denied: Sequence[str] = ()) -> str:
    """The real path of ``path`` (symlinks and ``..`` resolved) if it lies under a root and
    under no ``denied`` folder (the server's data directory); ``egress_denied`` otherwise.

    Checked before anything is read, so a probe cannot learn what exists outside.
    """
    if not roots:
        raise ProbeError(
            ErrorKind.EGRESS_DENIED, "file policy: no file roots are configured (CONNECTORD_FILE_ROOTS)"
        )
    real = os.path.realpath(path)

    def under(folder: str) -> bool:
        folder = os.path.realpath(folder)
        return os.path.commonpath([real, folder]) == folder

    if not any(under(root) for root in roots):
        raise ProbeError(
            ErrorKind.EGRESS_DENIED,
            "file policy: the path is outside the configured file roots (CONNECTORD_FILE_ROOTS)",
        )
    if any(under(folder) for folder in denied):
        raise ProbeError(ErrorKind.EGRESS_DENIED, "file policy: the server's data directory is never served")
    return real
