"""The exported model card: hub metadata in YAML front matter, the registry's facts for people."""

from __future__ import annotations

import yaml

from adapterlab.registry.deploy.model_card import render_model_card
from adapterlab.registry.records import AdapterVersion, BaseModelInfo

BASE = BaseModelInfo(
    name="sentence-transformers/all-MiniLM-L6-v2",
    fingerprint="f" * 64,
    hub_id="sentence-transformers/all-MiniLM-L6-v2",
    revision=None,
    model_type="bert",
    parameter_count=22_713_216,
    tensor_count=101,
    size_bytes=90_000_000,
    created_at="2026-01-01T00:00:00+00:00",
)


def version(**changes) -> AdapterVersion:
    values = dict(
        name="quickstart-complaints",
        version=3,
        base=BASE,
        task_type="SEQ_CLS",
        peft_type="LORA",
        config={"peft_type": "LORA", "r": 8},
        artifact_uri="mlflow-artifacts:/adapterlab/adapters/quickstart-complaints/abc",
        sha256="a" * 64,
        size_bytes=1234,
        trainable_params=74_498,
        metrics={"eval_accuracy": 0.9375, "eval_loss": 0.21},
        tags={},
        aliases=["production"],
        description="LoRA on MiniLM for customer complaints.",
        mlflow_run_id="0123456789abcdef",
        mlflow_version=3,
        created_by="alice",
        created_at="2026-01-02T00:00:00+00:00",
    )
    values.update(changes)
    return AdapterVersion(**values)


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    header, _, _ = card[4:].partition("\n---\n")
    return yaml.safe_load(header)


def test_adapter_card_carries_hub_metadata_and_registry_facts() -> None:
    card = render_model_card(version(), merged=False)
    meta = front_matter(card)
    assert meta["library_name"] == "peft"
    assert meta["base_model"] == BASE.name
    assert meta["pipeline_tag"] == "text-classification"
    assert "lora" in meta["tags"]
    facts = meta["adapterlab"]
    assert facts["version"] == 3 and facts["adapter"] == "quickstart-complaints"
    assert facts["base_model_fingerprint"] == BASE.fingerprint
    assert facts["metrics"] == {"eval_accuracy": 0.9375, "eval_loss": 0.21}
    assert facts["aliases"] == ["production"]
    body = card.split("\n---\n", 1)[1]
    assert "quickstart-complaints:3" in body and BASE.fingerprint in body
    assert "| eval_accuracy | 0.9375 |" in body
    assert "PeftModel.from_pretrained" in body and "AutoModelForSequenceClassification" in body


def test_merged_card_is_a_transformers_model_card() -> None:
    meta = front_matter(render_model_card(version(), merged=True))
    assert meta["library_name"] == "transformers"
    assert "merged" in meta["tags"]
    assert meta["base_model"] == BASE.name


def test_card_without_metrics_or_known_task_still_renders() -> None:
    card = render_model_card(version(metrics={}, task_type=None, aliases=[], description=None), merged=False)
    meta = front_matter(card)
    assert "pipeline_tag" not in meta
    assert meta["adapterlab"]["metrics"] == {}
    assert "## Metrics" not in card
    assert "AutoModel.from_pretrained" in card
