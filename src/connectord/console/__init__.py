"""The web console: server-rendered pages over the facade, served by ``connectord serve`` at ``/``.

Plain HTML from Jinja2 templates, a stylesheet and a small script of our own
(progressive enhancement: every read-only page works without it). It calls the
facade and :mod:`connectord.admin`, never the store. See ``docs/console.md``.
"""

from connectord.console.app import Console, console_routes

__all__ = ["Console", "console_routes"]
