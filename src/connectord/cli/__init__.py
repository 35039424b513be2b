"""The ``connectord`` command line (typer + rich).

Without ``--url`` it works on the local embedded store through the facade;
with ``--url`` (or ``CONNECTORD_URL``) it talks to a server through the SDK.
Errors are one line on stderr with a documented exit code (``docs/cli.md``).
"""

from connectord.cli.app import LAZY_COMMANDS, Code, LazyCommand, app, main

# Registered here, in the order `connectord --help` shows them; each module is
# imported when its command runs (the facade and the store are slow to import).
_CONNECTORS, _FILES, _TENANTS, _SERVER = "Connectors", "Provisioning", "Tenants and keys", "Server"
_OPERATE = "connectord.cli.operate"
for _command in (
    LazyCommand(
        "types", f"{_OPERATE}:types_", _CONNECTORS, "List connector types, or show one type's config fields."
    ),
    LazyCommand("audit", f"{_OPERATE}:audit", _CONNECTORS, "Show who changed or tested what, newest first."),
    LazyCommand(
        "connectors",
        "connectord.cli.connectors:app",
        _CONNECTORS,
        "Register, inspect, change, delete and test connectors.",
    ),
    LazyCommand(
        "apply",
        "connectord.cli.provision:apply",
        _FILES,
        "Create or update connectors from a file; a second run changes nothing.",
    ),
    LazyCommand(
        "export",
        "connectord.cli.provision:export",
        _FILES,
        "Write the tenant's connectors in the apply format; secrets become ${NAME_FIELD} references.",
    ),
    LazyCommand("tenants", f"{_OPERATE}:tenants_app", _TENANTS, "Create and list tenants."),
    LazyCommand("keys", f"{_OPERATE}:keys_app", _TENANTS, "Create, list and revoke API keys."),
    LazyCommand(
        "serve", f"{_OPERATE}:serve", _SERVER, "Run the REST API (flags override CONNECTORD_* variables)."
    ),
    LazyCommand(
        "worker",
        "connectord.cli.worker:worker",
        _SERVER,
        "Run scheduled checks, history retention and webhook deliveries, without the API, until SIGTERM.",
    ),
    LazyCommand("secrets", f"{_OPERATE}:secrets_app", _SERVER, "Manage the encryption of stored secrets."),
    LazyCommand(
        "backup",
        "connectord.cli.backup:backup",
        _SERVER,
        "Back up the embedded store while the server runs (a consistent SQLite snapshot).",
    ),
    LazyCommand(
        "restore",
        "connectord.cli.backup:restore",
        _SERVER,
        "Restore a backup into an empty data directory (a store is never overwritten).",
    ),
):
    LAZY_COMMANDS[_command.name] = _command

__all__ = ["Code", "app", "main"]
