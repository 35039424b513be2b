"""How the MCP gateway (:mod:`connectord.use.gateway`) names what it exposes.

Names (``docs/use.md``, "The MCP gateway"). A connector's *prefix* is its name
when that name is plain (ASCII letters, digits, ``-`` and single ``_``, not at
either end, at most 32 characters); otherwise, or when two visible connectors
would share one, it is the name with every other run of characters made one
``_``, cut to 23 characters, then ``-`` and 8 hex digits of the connector id's
SHA-256. A tool or prompt is exposed as ``<prefix>__<name>`` when its name is
made of ``[A-Za-z0-9_-]`` and the whole fits 64 characters (what every MCP
client and LLM API accepts); otherwise its name is made the same way (cut to
fit, ``-`` and 8 hex digits of the name's SHA-256). The prefix never holds
``__``, so the first ``__`` splits a name back. A resource (or template) URI
is exposed as ``connectord://<prefix>/<the server's URI, unchanged>``.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable
from typing import Final

from connectord.model import ConnectorInfo

logger = logging.getLogger("connectord.gateway")

#: Joins a connector's prefix and a tool's (or prompt's) name.
SEPARATOR: Final = "__"
#: The scheme of the resource URIs the gateway exposes.
URI_SCHEME: Final = "connectord://"
#: The longest tool or prompt name (what MCP clients and LLM APIs accept).
NAME_MAX: Final = 64
#: The longest prefix.
PREFIX_MAX: Final = 32
_DIGEST = 8
_PLAIN_PREFIX = re.compile(r"^[A-Za-z0-9-]+(?:_[A-Za-z0-9-]+)*$")
_PLAIN_ITEM = re.compile(r"^[A-Za-z0-9_-]+$")
_OTHER = re.compile(r"[^A-Za-z0-9-]+")
_HASHED = re.compile(r"-[0-9a-f]{8}$")


def is_hashed(name: str) -> bool:
    """Whether a name ends as a made-plain one does (``-`` and 8 hex digits): only the
    server's listing can tell which of its names it stands for."""
    return _HASHED.search(name) is not None


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:_DIGEST]


def _made_plain(text: str, room: int) -> str:
    return _OTHER.sub("_", text)[:room].strip("_")


def hashed_prefix(info: ConnectorInfo) -> str:
    """The prefix of a connector whose name is not plain (or shared): made plain, cut, hashed id."""
    base = _made_plain(info.name, PREFIX_MAX - _DIGEST - 1) or "c"
    return f"{base}-{_digest(info.id)}"


def preferred_prefix(info: ConnectorInfo) -> str:
    """A connector's prefix when no other visible connector claims the same."""
    if len(info.name) <= PREFIX_MAX and _PLAIN_PREFIX.match(info.name):
        return info.name
    return hashed_prefix(info)


def assign_prefixes(connectors: Iterable[ConnectorInfo]) -> dict[str, ConnectorInfo]:
    """Each connector by its prefix; connectors that would share one all take the hashed form."""
    chosen = [(preferred_prefix(c), c) for c in connectors]
    counts: dict[str, int] = {}
    for prefix, _ in chosen:
        counts[prefix] = counts.get(prefix, 0) + 1
    found: dict[str, ConnectorInfo] = {}
    for prefix, info in chosen:
        final = hashed_prefix(info) if counts[prefix] > 1 else prefix
        if final in found:  # two ids with one digest: neither can be named reliably
            logger.warning(
                "connectors %s and %s share the gateway prefix %r", found[final].id, info.id, final
            )
            continue
        found[final] = info
    return found


def exposed_name(prefix: str, name: str) -> str:
    """The gateway's name of a server's tool or prompt."""
    full = f"{prefix}{SEPARATOR}{name}"
    if len(full) <= NAME_MAX and _PLAIN_ITEM.match(name):
        return full
    room = NAME_MAX - len(prefix) - len(SEPARATOR) - _DIGEST - 1
    return f"{prefix}{SEPARATOR}{_made_plain(name, room)}-{_digest(name)}"


def exposed_uri(prefix: str, uri: str) -> str:
    """The gateway's URI of a server's resource (or URI template)."""
    return f"{URI_SCHEME}{prefix}/{uri}"


def split_uri(uri: str) -> tuple[str, str] | None:
    """(prefix, the server's URI) of a gateway URI; None when it is not one."""
    if not uri.startswith(URI_SCHEME):
        return None
    prefix, slash, inner = uri[len(URI_SCHEME) :].partition("/")
    return (prefix, inner) if slash and prefix and inner else None
