"""The model card (``README.md``) written with an exported adapter or merged model.

Hubs read the YAML front matter: ``library_name`` (``peft`` for an adapter, ``transformers`` for
a merged model), ``base_model``, ``pipeline_tag`` and ``tags``. The registry's own facts (version,
the base's weight fingerprint, checksum, metrics, MLflow run) sit under one ``adapterlab`` key so
that they round-trip and never collide with a hub's keys; the body repeats them for people.
"""

from __future__ import annotations

from typing import Any

from adapterlab.hf_format import auto_class_name, task
from adapterlab.registry.records import AdapterVersion


def card_metadata(version: AdapterVersion, *, merged: bool) -> dict[str, Any]:
    facts = task(version.task_type)
    pipeline_tag = facts.pipeline_tag if facts is not None else None
    metadata: dict[str, Any] = {
        "library_name": "transformers" if merged else "peft",
        "base_model": version.base.portable_name,
        "tags": ["adapterlab", version.peft_type.lower(), *(["merged"] if merged else [])],
    }
    if pipeline_tag:
        metadata["pipeline_tag"] = pipeline_tag
    metadata["adapterlab"] = {
        "adapter": version.name,
        "version": version.version,
        "aliases": list(version.aliases),
        "peft_type": version.peft_type,
        "task_type": version.task_type,
        "base_model_fingerprint": version.base.fingerprint,
        "base_model_revision": version.base.revision,
        "adapter_sha256": version.sha256,
        "trainable_params": version.trainable_params,
        "metrics": dict(version.metrics),
        "mlflow_run_id": version.mlflow_run_id,
        "created_at": version.created_at,
    }
    return metadata


def usage_snippet(version: AdapterVersion, *, merged: bool) -> str:
    auto_class = auto_class_name(version.task_type)
    if merged:
        return (
            f"from transformers import {auto_class}\n\n"
            f'model = {auto_class}.from_pretrained("path/to/this/folder")\n'
        )
    return (
        f"from transformers import {auto_class}\n"
        "from peft import PeftModel  # or: from adapterlab import PeftModel\n\n"
        f'base = {auto_class}.from_pretrained("{version.base.portable_name}")\n'
        'model = PeftModel.from_pretrained(base, "path/to/this/folder")\n'
    )


def render_model_card(version: AdapterVersion, *, merged: bool) -> str:
    """The card: YAML front matter for hubs, then the same facts and a usage example in Markdown."""
    import yaml  # registry modules import only sqlalchemy and the standard library at import time

    front_matter = yaml.safe_dump(card_metadata(version, merged=merged), sort_keys=False, allow_unicode=True)
    what = "merged into its base model" if merged else "adapter"
    lines = [
        f"---\n{front_matter}---",
        "",
        f"# {version.name} (version {version.version})",
        "",
        f"A {version.peft_type} {what} for `{version.base.name}`, exported from the adapterlab registry.",
        "",
        "| | |",
        "| --- | --- |",
        f"| version | `{version.ref}` |",
        f"| aliases | {', '.join(f'`{alias}`' for alias in version.aliases) or 'none'} |",
        f"| task | {version.task_type or 'unspecified'} |",
        f"| base model | `{version.base.name}` |",
        f"| base weights fingerprint | `{version.base.fingerprint}` |",
        f"| adapter files sha256 | `{version.sha256}` |",
        f"| trainable parameters | {version.trainable_params:,} |",
    ]
    if version.description:
        lines += ["", version.description]
    if version.metrics:
        lines += ["", "## Metrics", "", "| metric | value |", "| --- | --- |"]
        lines += [f"| {key} | {value:.6g} |" for key, value in sorted(version.metrics.items())]
    lines += ["", "## Usage", "", "```python", usage_snippet(version, merged=merged).rstrip("\n"), "```", ""]
    return "\n".join(lines)
