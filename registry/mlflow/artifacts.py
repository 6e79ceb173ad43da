"""Adapter files in MLflow's artifact store, content-addressed and verified on every download.

Files go to ``<artifact root>/adapters/<key>``, where the key is a SHA-256 over the adapter's name
and its content's sha256 (``artifact_key``): one fixed-length component with no user text in it,
so no name, however chosen, can nest inside or collide with another adapter's folder (a name is
free to contain '/'). Uploading is idempotent and happens before the version is allocated, so
the database transaction stays short and a failed upload leaves no version behind; every check
that can refuse a registration runs before it (``register.py``). Behind an ``mlflow server`` that proxies
artifacts (``mlflow-artifacts:`` root), the server accepts a model version's source only inside a run's
artifacts, so there the files go into the adapter's MLflow run (or a registration run made for
it). mlflow is imported only here, inside the functions.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from adapterlab.errors import AdapterExists, ChecksumMismatch, RegistryUnavailable
from adapterlab.registry import settings
from adapterlab.registry.files.adapter_folder import AdapterFolder, folder_files, manifest_digest
from adapterlab.registry.mlflow.mlflow_http import mlflow_call_settings, require_server
from adapterlab.registry.redaction import error_summary, redact


def _repository(uri: str):
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri())  # mlflow-artifacts: URIs go through it
    return get_artifact_repository(uri)


REGISTRATION_EXPERIMENT = "adapterlab-registrations"


def artifact_key(name: str, sha256: str) -> str:
    """The one path component that holds the files of ``name`` with content ``sha256``.

    Injective (JSON keeps the two parts apart) and of fixed length (no key is a prefix folder of
    another), so adapters cannot reach each other's files whatever their names.
    """
    return hashlib.sha256(json.dumps([name, sha256]).encode()).hexdigest()


def check_artifact_root() -> str:
    """The configured artifact root, refused when it carries credentials (they would be stored
    in every version's URI and shown by ``adapters show``)."""
    root = settings.artifact_root()
    if redact(root) != root:
        raise RegistryUnavailable(
            f"the artifact root {redact(root)} carries credentials; set them in the environment (e.g. "
            "AWS_ACCESS_KEY_ID, MLFLOW_TRACKING_USERNAME/PASSWORD) and remove them from "
            "ADAPTERLAB_ARTIFACT_ROOT"
        )
    return root


def upload_adapter(folder: AdapterFolder, name: str, run_id: str | None = None) -> tuple[str, str | None]:
    """Store the folder's files; returns their artifact URI and the MLflow run that holds them."""
    root = check_artifact_root()
    try:
        with mlflow_call_settings():
            if root.startswith("mlflow-artifacts:"):
                require_server(
                    settings.mlflow_tracking_uri()
                )  # seconds, not MLflow's retries, when it is down
                return _upload_to_run(folder, name, run_id)
            uri = f"{root}/adapters/{artifact_key(name, folder.sha256)}"
            _log_files(_repository(uri), folder, None)
            return uri, run_id
    except Exception as exc:  # every artifact backend raises its own errors
        raise RegistryUnavailable(
            f"cannot store the adapter files under {root}: {error_summary(exc)}"
        ) from exc


def _log_files(repository, folder: AdapterFolder, prefix: str | None) -> None:
    for file in folder.files:
        parent = "/".join(part for part in (prefix, str(Path(file.path).parent)) if part and part != ".")
        repository.log_artifact(str(folder.path / file.path), parent or None)


def _upload_to_run(folder: AdapterFolder, name: str, run_id: str | None) -> tuple[str, str]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri())
    created = run_id is None
    if created:
        run_id = client.create_run(
            _registration_experiment(client), run_name=f"register {name}", tags={"adapterlab.adapter": name}
        ).info.run_id
    run_uri = client.get_run(run_id).info.artifact_uri
    path = f"adapterlab/{artifact_key(name, folder.sha256)}"
    _log_files(_repository(run_uri), folder, path)
    if created:
        client.set_terminated(run_id)
    return f"{run_uri}/{path}", run_id


def upload_folder(folder: Path, uri: str) -> None:
    """Store every file of ``folder`` at the artifact URI ``uri``, keeping its sub-folders."""
    with mlflow_call_settings():
        _repository(uri).log_artifacts(str(folder))


def _registration_experiment(client) -> str:
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(REGISTRATION_EXPERIMENT)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(REGISTRATION_EXPERIMENT)
    except MlflowException:  # a concurrent registration created it first
        return client.get_experiment_by_name(REGISTRATION_EXPERIMENT).experiment_id


def download_adapter(uri: str, sha256: str, to_dir: Path) -> Path:
    """Download into ``to_dir`` (absent or empty) and verify; on any failure nothing is left there.

    Several pulls into one folder at once: one moves its verified files in; the others succeed
    when the folder then holds the same files, else they say someone else filled it.
    """
    to_dir = settings.usable_folder(Path(to_dir).absolute(), "destination")
    if to_dir.exists() and (not to_dir.is_dir() or any(to_dir.iterdir())):
        raise AdapterExists(f"{to_dir} exists and is not an empty folder; pull into a new folder")
    to_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".pull-", dir=to_dir.parent))
    try:
        try:
            with (
                _quiet("mlflow.store.artifact.artifact_repo"),
                mlflow_call_settings(),
            ):  # it logs "no artifacts found" to stderr
                _repository(uri).download_artifacts("", dst_path=str(staging))
        except Exception as exc:
            raise RegistryUnavailable(f"cannot download {redact(uri)}: {error_summary(exc)}") from exc
        verify_folder(staging, sha256, uri)
        try:
            staging.rename(to_dir)  # POSIX: replaces an empty folder, refuses a filled one
        except OSError as exc:
            if not (to_dir.is_dir() and manifest_digest(folder_files(to_dir)) == sha256):
                raise AdapterExists(
                    f"{to_dir} was filled by someone else during the pull; pull into a new folder"
                ) from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return to_dir


@contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def verify_folder(folder: Path, sha256: str, source: str) -> None:
    files = folder_files(folder)
    if not files:
        raise ChecksumMismatch(
            f"the files at {redact(source)} are missing (nothing there to download); "
            "restore them from a backup or re-register the adapter"
        )
    actual = manifest_digest(files)
    if actual != sha256:
        raise ChecksumMismatch(
            f"the files at {redact(source)} do not match their recorded sha256 ({actual[:12]}... != "
            f"{sha256[:12]}...); the artifact was altered, corrupted or is missing files: re-register the "
            "adapter"
        )
