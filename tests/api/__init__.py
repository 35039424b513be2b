"""REST API tests over real HTTP (see conftest.py)."""
