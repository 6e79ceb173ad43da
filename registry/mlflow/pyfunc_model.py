"""Every mirrored version as a real MLflow Model: the folder an MLflow model version's source points at.

MLflow resolves ``models:/NAME@alias`` to the version's ``source`` and loads the ``MLmodel`` file
found there. The folder holds::

    MLmodel            python_function flavor; loader: adapterlab.registry.mlflow.pyfunc_flavor
    python_env.yaml    the Python and pip that ``mlflow models serve`` (virtualenv) rebuilds
    requirements.txt   adapterlab, mlflow, torch, transformers at the versions that mirrored it
    adapterlab.json    who the adapter is: NAME:N, task, sha256 of its files, the base's identity
    adapter/           the adapter's files, byte for byte those at the version's ``artifact_uri``

The registry's own copy (``artifact_uri``, covered by the sha256 manifest) is left as it was:
``pull``, ``load`` and ``export`` never see these files. The model folder is a sibling of it
(``<artifact_uri>-mlflow-model``; keys are hex, so no adapter's folder can be named like that),
inside the same MLflow run when artifacts are proxied by a server. mlflow is imported only
inside the functions.
"""

from __future__ import annotations

import json
import platform
import tempfile
from dataclasses import fields
from importlib import metadata
from pathlib import Path
from typing import Any

from adapterlab.registry.deploy.predict import CLASSIFICATION
from adapterlab.registry.mlflow.artifacts import download_adapter, upload_folder
from adapterlab.registry.records import AdapterVersion, BaseSpec

LOADER_MODULE = "adapterlab.registry.mlflow.pyfunc_flavor"
ADAPTER_FOLDER = "adapter"  # the pyfunc flavor's ``data``
IDENTITY_FILE = "adapterlab.json"
MODEL_SUFFIX = "-mlflow-model"
IDENTITY_FORMAT = 1
REQUIREMENTS = ("adapterlab", "mlflow", "torch", "transformers")
MAX_NEW_TOKENS = 32  # as ``adapters predict``


def model_uri(version: AdapterVersion) -> str:
    """Where the MLflow Model folder of ``version`` is stored (its MLflow model version's source)."""
    return version.artifact_uri.rstrip("/") + MODEL_SUFFIX


def publish_model(version: AdapterVersion) -> str:
    """Write the MLflow Model folder of ``version`` (its verified files inside) and store it; its URI."""
    uri = model_uri(version)
    with tempfile.TemporaryDirectory(prefix="adapterlab-mlmodel-") as scratch:
        folder = Path(scratch) / "model"
        download_adapter(version.artifact_uri, version.sha256, folder / ADAPTER_FOLDER)
        write_model_files(folder, version)
        upload_folder(folder, uri)
    return uri


def write_model_files(folder: Path, version: AdapterVersion) -> None:
    """The MLmodel, environment and identity files of ``version`` in ``folder`` (beside ``adapter/``)."""
    from mlflow.models import Model
    from mlflow.pyfunc import add_to_model

    (folder / IDENTITY_FILE).write_text(json.dumps(identity(version), indent=2, sort_keys=True) + "\n")
    (folder / "requirements.txt").write_text("".join(f"{line}\n" for line in _requirements()))
    (folder / "python_env.yaml").write_text(_python_env())
    model = Model(
        signature=_signature(version), metadata={"adapterlab_ref": version.ref, "sha256": version.sha256}
    )
    # MLflow passes a load-time ``model_config`` on only for the keys declared here
    add_to_model(
        model,
        loader_module=LOADER_MODULE,
        data=ADAPTER_FOLDER,
        python_env="python_env.yaml",
        model_config={"base": None},
    )
    model.save(str(folder / "MLmodel"))


def _signature(version: AdapterVersion):
    """No input schema (texts come as lists, Series, arrays); LM tasks take ``max_new_tokens``."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ParamSchema, ParamSpec

    if version.task_type in CLASSIFICATION:
        return None
    return ModelSignature(
        inputs=None, params=ParamSchema([ParamSpec("max_new_tokens", "long", MAX_NEW_TOKENS)])
    )


def identity(version: AdapterVersion) -> dict[str, Any]:
    """What the loader needs to know without the registry: the version, its files' digest, its base."""
    base = {field.name: getattr(version.base, field.name) for field in fields(BaseSpec)}
    return {
        "format": IDENTITY_FORMAT,
        "name": version.name,
        "version": version.version,
        "task_type": version.task_type,
        "peft_type": version.peft_type,
        "sha256": version.sha256,
        "base": base,
    }


def _requirements() -> list[str]:
    return [_pinned(package) or package for package in REQUIREMENTS]


def _python_env() -> str:
    import yaml

    build = [pin for pin in map(_pinned, ("pip", "setuptools", "wheel")) if pin]
    environment = {
        "python": platform.python_version(),
        "build_dependencies": build or ["pip"],
        "dependencies": ["-r requirements.txt"],
    }
    return yaml.safe_dump(environment, sort_keys=False)


def _pinned(package: str) -> str | None:
    """``package==VERSION`` as installed here; a local build tag (torch's "+cpu") names no release."""
    try:
        return f"{package}=={metadata.version(package).split('+')[0]}"
    except metadata.PackageNotFoundError:
        return None
