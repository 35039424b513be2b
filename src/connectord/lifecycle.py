"""The status lifecycle (``docs/status-lifecycle.md``): who may set which status, and
what a change of definition or a test result does to it."""

from __future__ import annotations

from typing import Any

from connectord.errors import FieldError, InvalidTransitionError, ValidationError
from connectord.model import ConnectorInfo, ConnectorStatus, ErrorKind, TestResult

S = ConnectorStatus
#: Statuses a user may set, and the statuses each may be set from.
USER_TRANSITIONS: dict[str, frozenset[str]] = {
    S.REGISTERED: frozenset(S) - {S.REGISTERED},
    S.CONFIGURING: frozenset({S.REGISTERED, S.READY, S.CONNECTED, S.ERROR, S.DISCONNECTED}),
    S.READY: frozenset({S.REGISTERED, S.CONFIGURING}),
    S.DISCONNECTED: frozenset(S) - {S.DEPRECATED, S.DISCONNECTED},
    S.DEPRECATED: frozenset(S) - {S.DEPRECATED},
}
#: Statuses a change of endpoint or config does not reset to ``registered``.
STICKY_STATUSES = frozenset({S.DISCONNECTED, S.DEPRECATED, S.CONFIGURING})
#: Statuses a test result does not overwrite: a user paused or retired the connector.
_KEPT_BY_TESTS = frozenset({S.DISCONNECTED, S.DEPRECATED})
STATUSES = frozenset(ConnectorStatus)


def check_status(status: str | None) -> str | None:
    """A status filter: ``None`` or one of the seven statuses."""
    if status is not None and status not in STATUSES:
        raise _invalid_status()
    return status


def next_status(current: str, requested: str | None, definition_changed: bool) -> str:
    """The status after an update that asks for ``requested`` (or nothing) and does or
    does not change the endpoint, config or secrets."""
    if requested is not None and requested != current:
        allowed_from = USER_TRANSITIONS.get(requested)
        if allowed_from is None:
            # Formatted, not repr'd: a StrEnum's repr is <ConnectorStatus.X: 'x'>.
            settable = ", ".join(USER_TRANSITIONS)
            if requested in STATUSES:
                raise InvalidTransitionError(
                    f"status '{requested}' is set by tests only; a user may set {settable}"
                )
            raise _invalid_status()
        if current not in allowed_from:
            raise InvalidTransitionError(f"a {current} connector cannot be set to {requested}")
        return requested
    if requested == current and requested in USER_TRANSITIONS:
        return current  # asked for explicitly: kept across a definition change too
    if definition_changed and current not in STICKY_STATUSES:
        return ConnectorStatus.REGISTERED
    return current


def changes_after_test(
    current: ConnectorInfo, result: TestResult, capabilities: list[str] | None
) -> dict[str, Any]:
    """What a test result changes on the connector: its last use, its capabilities if
    the probe learned them, and its status unless a user paused or retired it."""
    changes: dict[str, Any] = {"last_used_at": result.tested_at}
    if result.error_kind == ErrorKind.CANCELLED:
        return changes
    if current.status not in _KEPT_BY_TESTS:
        changes["status"] = ConnectorStatus.CONNECTED if result.success else ConnectorStatus.ERROR
    if capabilities is not None and capabilities != current.capabilities:
        changes["capabilities"] = capabilities
    return changes


def _invalid_status() -> ValidationError:
    return ValidationError(
        "invalid status", [FieldError(("status",), f"must be one of {', '.join(ConnectorStatus)}")]
    )
