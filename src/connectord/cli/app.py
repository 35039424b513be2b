"""The root command, global options, and how errors become one line and an exit code.

The commands are registered by import path (:class:`LazyCommand`) and imported
when run: ``connectord --version`` and ``--help`` load typer and rich only, not
the facade, the store or the SDK (``tests/test_cli_imports.py`` pins it).
"""

from __future__ import annotations

import enum
import importlib
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from typer.core import TyperCommand, TyperGroup

from connectord import errors as e

if TYPE_CHECKING:
    from rich.console import Console

T = TypeVar("T")

EXAMPLES = """\
[bold]Examples[/bold]

  [dim]# register a connector and test it (local store, no server needed)[/dim]
  connectord connectors register orders-db --type sql \\
    --endpoint postgresql://app@127.0.0.1/orders --secret-prompt password
  connectord connectors test orders-db

  [dim]# test everything, 8 at a time; exit code 1 if any failed[/dim]
  connectord connectors test --all --concurrency 8

  [dim]# provision from a file; a second run changes nothing[/dim]
  connectord apply -f connectors.yaml --dry-run
  connectord apply -f connectors.yaml

  [dim]# talk to a server instead of the local store[/dim]
  export CONNECTORD_URL=http://127.0.0.1:8080 CONNECTORD_API_KEY=cdk_...
  connectord connectors list -o json

[bold]Exit codes[/bold]  0 ok · 1 failed · 2 usage or invalid input · 3 not found
            4 conflict · 5 not authorized · 6 unreachable · 7 rate limited

Docs: docs/cli.md
"""


class Code(enum.IntEnum):
    """The documented exit codes."""

    OK = 0
    FAILED = 1
    USAGE = 2
    NOT_FOUND = 3
    CONFLICT = 4
    AUTH = 5
    UNREACHABLE = 6
    RATE_LIMITED = 7


_CODES: list[tuple[type[Exception], Code]] = [
    (e.ValidationError, Code.USAGE),
    (e.PayloadTooLargeError, Code.USAGE),
    (e.ConfigurationError, Code.USAGE),
    (e.NotFoundError, Code.NOT_FOUND),
    (e.ConflictError, Code.CONFLICT),
    (e.AuthenticationError, Code.AUTH),
    (e.PermissionDeniedError, Code.AUTH),
    (e.TransportError, Code.UNREACHABLE),
    (e.StoreError, Code.UNREACHABLE),
    (e.RateLimitedError, Code.RATE_LIMITED),
]


def exit_code(exc: BaseException) -> Code:
    """The exit code of an error."""
    if _is_settings_error(exc):
        return Code.USAGE
    return next((code for cls, code in _CODES if isinstance(exc, cls)), Code.FAILED)


def _is_settings_error(exc: BaseException) -> bool:
    # Imported here: only the commands that read settings load pydantic.
    import pydantic

    return isinstance(exc, pydantic.ValidationError)


def where(loc: tuple[str | int, ...]) -> str:
    """``("connectors", 0, "config")`` as ``connectors[0].config``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def describe(exc: BaseException) -> str:
    """One human line for an error; never a secret (core messages are written by connectord)."""
    if isinstance(exc, e.ConnectordError):
        text = exc.message
        if isinstance(exc, e.ValidationError) and exc.errors:
            fields = "; ".join(f"{where(fe.loc)}: {fe.msg}" for fe in exc.errors)
            text = fields if text in ("invalid input", "") else f"{text}: {fields}"
        if isinstance(exc, e.RateLimitedError):
            text += f" (retry in {exc.retry_after:g} s)"
        return text
    import pydantic  # loaded already if the error is one of its own

    if isinstance(exc, pydantic.ValidationError):
        fields = "; ".join(
            f"CONNECTORD_{str(err['loc'][0]).upper() if err['loc'] else 'settings'}: {err['msg']}"
            for err in exc.errors()
        )
        return f"invalid settings: {fields}"
    return f"unexpected failure ({type(exc).__name__}); run with --debug for the traceback"


@dataclass(slots=True)
class State:
    """The global options, passed to every command through the click context."""

    url: str | None = None
    api_key_file: Path | None = None
    debug: bool = False

    @property
    def remote(self) -> bool:
        """Whether commands talk to a server (else to the local store)."""
        return bool(self.url)

    def api_key(self) -> str | None:
        """The key from ``--api-key-file``, else ``CONNECTORD_API_KEY``."""
        if self.api_key_file is None:
            return os.environ.get("CONNECTORD_API_KEY") or None
        try:
            return self.api_key_file.read_text().strip() or None
        except OSError as exc:
            raise typer.BadParameter(
                f"cannot read {self.api_key_file}: {exc.strerror}", param_hint="--api-key-file"
            ) from None


def stderr() -> Console:
    """The console for messages, progress and errors."""
    from rich.console import Console  # rich loads only once something is printed

    return Console(stderr=True, highlight=False)


def stdout() -> Console:
    """The console for results."""
    from rich.console import Console

    # Piped output gets room for wide tables; rich would assume 80 columns.
    return Console(highlight=False, width=None if sys.stdout.isatty() else 200)


def fail(state: State, exc: BaseException) -> NoReturn:
    """Print one error line (and the traceback with ``--debug``) and exit with its code."""
    console = stderr()
    if state.debug:
        console.print_exception(show_locals=False)
    from rich.markup import escape

    console.print(f"[red]error:[/red] {escape(describe(exc))}", soft_wrap=True)
    raise typer.Exit(exit_code(exc))


def state_of(ctx: typer.Context) -> State:
    """The global options of this invocation."""
    found = ctx.find_object(State)
    return found if found is not None else State()


def guard(ctx: typer.Context, fn: Callable[[], T]) -> T:
    """Call ``fn``; core and transport errors become one error line and their exit code."""
    try:
        return fn()
    except (typer.BadParameter, typer.Exit, typer.Abort):
        raise
    except KeyboardInterrupt:
        stderr().print("interrupted")
        raise typer.Exit(130) from None
    except Exception as exc:  # noqa: BLE001 - every failure becomes one line and a code
        fail(state_of(ctx), exc)


def run(ctx: typer.Context, work: Callable[[], Awaitable[T]]) -> T:
    """Run a command's coroutine under :func:`guard`."""
    import asyncio  # ~40 ms: only the commands that run one pay for it

    return guard(ctx, lambda: asyncio.run(_run(work)))


async def _run(work: Callable[[], Awaitable[T]]) -> T:
    return await work()


def _version(value: bool) -> None:
    if value:
        try:
            number = version("connectord")
        except PackageNotFoundError:
            number = "unknown"
        typer.echo(f"connectord {number}")
        raise typer.Exit()


@dataclass(frozen=True, slots=True)
class LazyCommand:
    """A command known by its import path: ``connectord --help`` shows ``summary``, and
    the module is imported only when the command runs or shows its own help."""

    name: str
    #: ``module:attribute``, a function (a command) or a ``typer.Typer`` (a group).
    target: str
    panel: str
    #: The line the root help shows: the command's own first help line
    #: (``tests/test_cli_imports.py`` checks they agree).
    summary: str

    def placeholder(self) -> TyperCommand:
        """A stand-in that only describes the command, for the root help."""
        return TyperCommand(self.name, help=self.summary, rich_help_panel=self.panel)

    def load(self) -> Any:
        """The real command, as ``add_typer``/``command`` would have made it."""
        module, _, attribute = self.target.partition(":")
        target = getattr(importlib.import_module(module), attribute)
        holder = typer.Typer(rich_markup_mode="rich")
        if isinstance(target, typer.Typer):
            holder.add_typer(target, name=self.name, rich_help_panel=self.panel)
        else:
            holder.command(self.name, rich_help_panel=self.panel)(target)
        holder.callback()(lambda: None)
        group = typer.main.get_group(holder)
        return group.commands[self.name]


#: The commands of the root group, in the order ``connectord --help`` shows them.
LAZY_COMMANDS: dict[str, LazyCommand] = {}


class LazyGroup(TyperGroup):
    """The root group: commands of :data:`LAZY_COMMANDS` are loaded on first use."""

    _listing = False

    # Typed loosely: typer's own click (vendored in recent releases) and the click
    # package are different classes, and these overrides must fit both.
    def list_commands(self, ctx: Any) -> list[str]:
        return [*super().list_commands(ctx), *(name for name in LAZY_COMMANDS if name not in self.commands)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        found = super().get_command(ctx, cmd_name)
        lazy = LAZY_COMMANDS.get(cmd_name)
        if found is not None or lazy is None:
            return found
        if self._listing:
            return lazy.placeholder()
        self.commands[cmd_name] = command = lazy.load()
        return command

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


app = typer.Typer(
    name="connectord",
    cls=LazyGroup,
    help="Register connectors to external systems, keep their secrets encrypted, and really test them.\n\n"
    "Without --url, commands work on the local store in CONNECTORD_DATA_DIR; "
    "with --url (or CONNECTORD_URL) they talk to a connectord server.",
    epilog=EXAMPLES,
    no_args_is_help=True,
    rich_markup_mode="rich",
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)


@app.callback()
def root(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            envvar="CONNECTORD_URL",
            help="Server to talk to, e.g. http://127.0.0.1:8080. Unset: use the local store.",
            show_envvar=True,
        ),
    ] = None,
    api_key_file: Annotated[
        Path | None,
        typer.Option(
            "--api-key-file",
            help="File holding the API key (else CONNECTORD_API_KEY). Keys are never taken as flag values.",
            dir_okay=False,
        ),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    show_version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """connectord: a registry of connectors that really tests each one."""
    ctx.obj = State(url=url or None, api_key_file=api_key_file, debug=debug)


def main() -> None:
    """The ``connectord`` console script."""
    app()
