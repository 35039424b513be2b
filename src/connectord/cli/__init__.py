"""The ``connectord`` command line (typer + rich).

Without ``--url`` it works on the local embedded store through the facade;
with ``--url`` (or ``CONNECTORD_URL``) it talks to a server through the SDK.
Errors are one line on stderr with a documented exit code (``docs/cli.md``).
"""

from connectord.cli import operate, provision
from connectord.cli.app import Code, app, main
from connectord.cli.connectors import app as connectors_app

# Registered here, in the order `connectord --help` shows them.
_CONNECTORS, _FILES, _TENANTS, _SERVER = "Connectors", "Provisioning", "Tenants and keys", "Server"
app.add_typer(connectors_app, name="connectors", rich_help_panel=_CONNECTORS)
app.command("types", rich_help_panel=_CONNECTORS)(operate.types_)
app.command("audit", rich_help_panel=_CONNECTORS)(operate.audit)
app.command("apply", rich_help_panel=_FILES)(provision.apply)
app.command("export", rich_help_panel=_FILES)(provision.export)
app.add_typer(operate.tenants_app, name="tenants", rich_help_panel=_TENANTS)
app.add_typer(operate.keys_app, name="keys", rich_help_panel=_TENANTS)
app.command("serve", rich_help_panel=_SERVER)(operate.serve)
app.add_typer(operate.secrets_app, name="secrets", rich_help_panel=_SERVER)

__all__ = ["Code", "app", "main"]
