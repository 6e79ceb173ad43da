"""Adapter files in MLflow's artifact store, content-addressed and verified on every download.

Files go to ``<artifact root>/adapters/<name>/<sha256>``: uploading is idempotent and happens
before the version is allocated, so the database transaction stays short and a failed upload
leaves no version behind. Behind an ``mlflow server`` that proxies artifacts
(``mlflow-artifacts:`` root), the server accepts a model version's source only inside a run's
artifacts, so there the files go into the adapter's MLflow run (or a registration run made for
it). mlflow is imported only here, inside the functions.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from adapterlab.errors import AdapterExists, ChecksumMismatch, RegistryUnavailable, summarize
from adapterlab.registry import settings
from adapterlab.registry.files.adapter_folder import AdapterFolder, folder_files, manifest_digest


def _repository(uri: str):
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri())  # mlflow-artifacts: URIs go through it
    return get_artifact_repository(uri)


REGISTRATION_EXPERIMENT = "adapterlab-registrations"


def upload_adapter(folder: AdapterFolder, name: str, run_id: str | None = None) -> tuple[str, str | None]:
    """Store the folder's files; returns their artifact URI and the MLflow run that holds them."""
    root = settings.artifact_root()
    try:
        if root.startswith("mlflow-artifacts:"):
            return _upload_to_run(folder, name, run_id)
        uri = f"{root}/adapters/{name}/{folder.sha256}"
        _log_files(_repository(uri), folder, None)
        return uri, run_id
    except Exception as exc:  # every artifact backend raises its own errors
        raise RegistryUnavailable(f"cannot store the adapter files under {root}: {summarize(exc, first_line=True, limit=None)}") from exc


def _log_files(repository, folder: AdapterFolder, prefix: str | None) -> None:
    for file in folder.files:
        parent = "/".join(part for part in (prefix, str(Path(file.path).parent)) if part and part != ".")
        repository.log_artifact(str(folder.path / file.path), parent or None)


def _upload_to_run(folder: AdapterFolder, name: str, run_id: str | None) -> tuple[str, str]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri())
    created = run_id is None
    if created:
        run_id = client.create_run(_registration_experiment(client), run_name=f"register {name}",
                                   tags={"adapterlab.adapter": name}).info.run_id  # fmt: skip
    run_uri = client.get_run(run_id).info.artifact_uri
    path = f"adapterlab/{name}/{folder.sha256}"
    _log_files(_repository(run_uri), folder, path)
    if created:
        client.set_terminated(run_id)
    return f"{run_uri}/{path}", run_id


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
            with _quiet("mlflow.store.artifact.artifact_repo"):  # it logs "no artifacts found" to stderr
                _repository(uri).download_artifacts("", dst_path=str(staging))
        except Exception as exc:
            raise RegistryUnavailable(f"cannot download {uri}: {summarize(exc, first_line=True, limit=None)}") from exc
        verify_folder(staging, sha256, uri)
        try:
            staging.rename(to_dir)  # POSIX: replaces an empty folder, refuses a filled one
        except OSError as exc:
            if not (to_dir.is_dir() and manifest_digest(folder_files(to_dir)) == sha256):
                raise AdapterExists(f"{to_dir} was filled by someone else during the pull; pull into a new folder") from exc
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
        raise ChecksumMismatch(f"the files at {source} are missing (nothing there to download); "
                               "restore them from a backup or re-register the adapter")
    actual = manifest_digest(files)
    if actual != sha256:
        raise ChecksumMismatch(
            f"the files at {source} do not match their recorded sha256 ({actual[:12]}... != {sha256[:12]}...); "
            "the artifact was altered, corrupted or is missing files: re-register the adapter"
        )
