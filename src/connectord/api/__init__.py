"""The REST API (FastAPI) over the facade."""
