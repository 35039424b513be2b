"""Notifications: webhooks and the events they carry (``docs/webhooks.md``).

- :mod:`.webhooks`: the webhook resource (URL and event-type checks, the signing
  secret, shown once and stored sealed) and the connector events the facade emits.
- :mod:`.signing`: Standard Webhooks signatures.
- :mod:`.delivery`: the worker that sends the outbox's deliveries through the
  egress policy, with retries; it calls the facade, so it sits above it.

This ``__init__`` imports nothing: its modules sit at two levels of the layering
(``.importlinter``), below and above the facade.
"""
