"""The registry's database: engines and transactions, the one schema (SQLAlchemy Core), writes, Alembic.

Nothing here knows about adapter files or MLflow; the verbs one level up compose it with them.
"""
