"""Connector types: one module per type; the registry is in ``base``."""
