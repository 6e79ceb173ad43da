"""Alembic migrations of the registry schema (run from code by ``adapterlab.registry``)."""
