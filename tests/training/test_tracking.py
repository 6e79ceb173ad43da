"""What goes to MLflow as params: flat, typed readably, no secrets."""

from __future__ import annotations

from enum import Enum

from adapterlab.training.tracking import flatten_params, redact


class Kind(str, Enum):
    LORA = "LORA"


def test_passwords_in_uris_are_redacted() -> None:
    assert redact("postgresql://alice:s3cret@db:5432/reg") == "postgresql://***@db:5432/reg"
    assert redact("postgresql://alice:p@ss@db/reg") == "postgresql://***@db/reg"  # up to the last '@'
    assert redact("https://mlflow.example.com/path") == "https://mlflow.example.com/path"


def test_params_are_flat_readable_and_secret_free() -> None:
    params = flatten_params(
        {
            "registry_url": "postgresql+psycopg://bob:hunter2@host/db",
            "hub_token": "hf_abc",
            "peft": {"r": 8, "target_modules": {"value", "query"}, "peft_type": Kind.LORA},
            "description": "x" * 7000,
        }
    )
    assert params["registry_url"] == "postgresql+psycopg://***@host/db"
    assert params["hub_token"] == "***"
    assert params["peft.r"] == "8" and params["peft.peft_type"] == "LORA"
    assert params["peft.target_modules"] == '["query", "value"]'
    assert len(params["description"]) == 6000
    assert "hunter2" not in str(params) and "hf_abc" not in str(params)
