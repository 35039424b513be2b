"""Health monitoring over the facade: scheduled checks, history retention, health summaries.

- :mod:`connectord.health.scheduler`: tests every connector on its interval, each
  check once across replicas (leases in the store);
- :mod:`connectord.health.retention`: keeps the test history bounded, in small batches;
- :mod:`connectord.health.service`: runs both inside ``connectord serve`` or alone as
  ``connectord worker``, with SQLite's single owner (:mod:`connectord.health.owner`);
- :mod:`connectord.health.summary`: a connector's uptime and latency from its history.

Nothing is imported here, so a caller of one module does not load the others.
``docs/health.md`` explains the scheduling, the leases and what happens when a replica dies.
"""
