"""The MLflow side of a training run: one run with params, metrics, inputs, tags and artifacts.

Only the main process creates a ``RunTracker``. The run is opened after every pre-flight check
has passed, so bad input never leaves an empty run behind, and it is closed with the status the
training really ended with (FINISHED, FAILED, KILLED). A resumed training reopens the same run.
"""

from __future__ import annotations

import json
import os
import re
import sys
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any

from adapterlab.errors import RegistryUnavailable, summarize
from adapterlab.registry.redaction import redact  # the one helper: user info masked up to the last '@'

PARAM_VALUE_LIMIT = 6000  # MLflow's limit on a param's length
SECRET_KEYS = re.compile(r"password|passwd|secret|token|api[_-]?key|credential", re.IGNORECASE)
SYSTEM_METRICS_INTERVAL_S = 5


def flatten_params(values: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested dicts as ``a.b`` keys; secrets hidden; values cut to MLflow's length limit."""
    flat: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten_params(value, f"{name}."))
            continue
        shown = param_text(value)
        flat[name] = "***" if SECRET_KEYS.search(key) and value else redact(shown)[:PARAM_VALUE_LIMIT]
    return flat


def param_text(value: Any) -> str:
    """Enums by value, sets sorted, lists/dicts as JSON, the rest as ``str``."""
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, (set, frozenset)):
        value = sorted(value)
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, sort_keys=True, default=param_text)
    return str(value)


def run_name(adapter: str, method: str, rank: int | None, started: datetime) -> str:
    """``complaints-lora-r8-1130-184233``: what tells runs apart in MLflow's run list (MLflow's own
    default is a random pair of words).

    The method (PEFT's name, ``LORA``) is written as a slug here, like the adapter name beside it:
    a run name is an identifier read at a glance, not a value to match; the run's params and tags
    carry the method as PEFT names it."""
    rank_part = [f"r{rank}"] if rank is not None else []
    slug = method.lower().replace("_", "-")
    return "-".join([adapter, slug, *rank_part, started.strftime("%m%d-%H%M%S")])


def best_metrics(metrics: dict[str, float], step: int) -> dict[str, float]:
    """The best evaluation as the run logs it (``best_<metric>``, ``best_step``): the numbers the
    registry records for the version, so the run and the registry agree."""
    return {**{f"best_{key}": value for key, value in metrics.items()}, "best_step": float(step)}


def check_tracking_reachable(uri: str, experiment: str) -> None:
    """Fail before training when the tracking store cannot be reached (a wrong URI, a down server)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from adapterlab.registry.settings import sqlite_file

    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # fail in seconds, not minutes
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    try:
        database = sqlite_file(uri)
        if database is not None:
            database.parent.mkdir(parents=True, exist_ok=True)
        mlflow.MlflowClient(uri).get_experiment_by_name(experiment)
    except (MlflowException, OSError, ConnectionError) as exc:
        reason = summarize(exc)
        raise RegistryUnavailable(
            f"cannot reach the MLflow tracking store at {redact(uri)}: {reason} (check MLFLOW_TRACKING_URI)"
        ) from exc
    except Exception as exc:  # sqlalchemy/requests errors surface under many types
        raise RegistryUnavailable(
            f"cannot reach the MLflow tracking store at {redact(uri)}: {type(exc).__name__}: "
            f"{summarize(exc)} (check MLFLOW_TRACKING_URI)"
        ) from exc


class RunTracker:
    """One MLflow run; ``run_id`` is set once started.

    Once the run has started, losing the tracking store must not lose the training: a failed
    metric write is reported once, later writes are skipped, and ``lost`` records why, so the
    caller can keep the adapter and say how to register it by hand.
    """

    def __init__(self, uri: str, experiment: str, artifact_location: str | None) -> None:
        import mlflow

        # MLflow prints "View run at <tracking URL>" when a run ends: that URL may carry credentials
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        self._mlflow = mlflow
        self.uri, self.experiment, self.artifact_location = uri, experiment, artifact_location
        self.run_id: str | None = None
        self.lost: str | None = None  # why the tracking store stopped answering mid-run

    def start(self, run_name: str, resume_run_id: str | None, tags: dict[str, str]) -> str:
        mlflow = self._mlflow
        mlflow.set_tracking_uri(self.uri)
        experiment = mlflow.get_experiment_by_name(self.experiment)
        experiment_id = (
            experiment.experiment_id
            if experiment
            else mlflow.create_experiment(self.experiment, artifact_location=self.artifact_location)
        )
        mlflow.set_system_metrics_sampling_interval(SYSTEM_METRICS_INTERVAL_S)
        mlflow.set_system_metrics_samples_before_logging(1)
        run = mlflow.start_run(
            run_id=resume_run_id,
            experiment_id=None if resume_run_id else experiment_id,
            run_name=None if resume_run_id else run_name,
            tags=tags,
            log_system_metrics=True,
        )
        self.run_id = run.info.run_id
        return self.run_id

    def log_params(self, params: dict[str, str]) -> None:
        existing = self._mlflow.get_run(self.run_id).data.params
        # a resumed run may not re-log a param with a new value (MLflow refuses); `resume` itself differs
        self._mlflow.log_params({key: value for key, value in params.items() if key not in existing})

    def log_dataset(self, table: Any, source: str, name: str, context: str, target: str | None) -> None:
        import mlflow.data

        dataset = mlflow.data.from_pandas(table.to_pandas(), source=source, name=name, targets=target)
        self._mlflow.log_input(dataset, context=context)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        if self.lost:
            return
        try:
            self._mlflow.log_metrics(metrics, step=step)
        except Exception as exc:  # any transport/store error: training goes on without tracking
            self.lost = f"{type(exc).__name__}: {summarize(exc)}"
            print(
                f"Warning: MLflow at {redact(self.uri)} stopped answering ({self.lost}); "
                "training continues without logging",
                file=sys.stderr,
            )

    def log_artifacts(self, adapter_dir: Path, config_yaml: str) -> None:
        self._mlflow.log_artifacts(str(adapter_dir), artifact_path="adapter")
        self._mlflow.log_text(config_yaml, "config/train_config.yaml")

    def end(self, status: str) -> None:
        """Close the run; when the store is gone, only the local state is cleared."""
        try:
            self._mlflow.end_run(status=status)
        except Exception as exc:  # the store already failed us; the caller reports `lost`
            self.lost = self.lost or f"{type(exc).__name__}: {summarize(exc)}"


def default_artifact_location(uri: str) -> str | None:
    """New experiments keep their artifacts under the adapterlab home (never ``./mlruns``),
    unless the tracking server proxies artifacts itself."""
    if uri.startswith(("http://", "https://")):
        return None
    from adapterlab.registry.settings import artifact_root

    return f"{artifact_root()}/mlflow"
