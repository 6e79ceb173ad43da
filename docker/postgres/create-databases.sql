-- Runs once, when the PostgreSQL volume is first initialised. The registry lives in the database
-- named by POSTGRES_DB; MLflow gets its own database because both keep an `alembic_version` table.
CREATE DATABASE mlflow;
