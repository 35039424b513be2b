"""An example connectord plugin: the ``smtp`` connector type.

connectord finds it through the entry point group ``connectord.connector_types``
(see ``pyproject.toml``); the entry point names :class:`SmtpType`, which the
registry instantiates on first use. The package needs nothing but connectord and
the standard library: a plugin imports its own driver lazily, inside ``probe``,
so that listing types never fails on a missing driver.
"""

from connectord_example_plugin.smtp import SmtpConfig, SmtpType

__all__ = ["SmtpConfig", "SmtpType"]
