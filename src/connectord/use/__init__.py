"""Using connectors, not only testing them (``docs/use.md``).

- :mod:`.proxy`: the credential-injecting HTTP proxy behind
  ``/api/v1/connectors/{id}/proxy/{path}`` (above the facade: it asks the facade
  for the connector, then forwards through the egress policy).
- :mod:`.gateway`: the MCP gateway behind ``/api/v1/mcp`` (above the facade, as
  the proxy is), and :mod:`.gateway_names`, how it names what it exposes.
- :mod:`.cache`: what a use makes of a connector, kept while it is unchanged (below
  the facade, which fills it; the proxy keeps its upstreams in one).
- :mod:`.oauth`: the OAuth 2.0 token broker (below the facade: it keeps access
  tokens encrypted in the store and refreshes them once across replicas).

The package imports none of them on purpose: they sit in different layers.
"""
