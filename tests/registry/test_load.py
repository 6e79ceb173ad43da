"""``load``: the registered adapter on its base, refused on other weights unless allowed."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModel

from adapterlab.errors import BaseModelMismatch
from adapterlab.registry import load, register_adapter


def test_load_builds_the_adapter_on_its_recorded_base(registry_env, tiny_base, make_lora) -> None:
    register_adapter(make_lora(seed=1), name="a", base=tiny_base)
    model = load("a")
    assert not model.training
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        adapted = model(input_ids=ids).last_hidden_state
        plain = AutoModel.from_pretrained(tiny_base)(input_ids=ids).last_hidden_state
    assert not torch.allclose(adapted, plain)  # the (random, non-zero) LoRA deltas are applied
    assert load("a", AutoModel.from_pretrained(tiny_base)) is not None  # same weights in memory pass


def test_load_refuses_a_base_with_other_weights(registry_env, tiny_base, other_base, make_lora) -> None:
    register_adapter(make_lora(seed=1), name="a", base=tiny_base)
    with pytest.raises(BaseModelMismatch, match="allow_base_mismatch"):
        load("a", AutoModel.from_pretrained(other_base))
    assert load("a", AutoModel.from_pretrained(other_base), allow_base_mismatch=True) is not None


def test_adapter_saved_by_adapterlab_round_trips(registry_env, tiny_base, tmp_path) -> None:
    from adapterlab import LoraConfig, get_peft_model

    torch.manual_seed(0)
    model = get_peft_model(
        AutoModel.from_pretrained(tiny_base),
        LoraConfig(r=2, target_modules=["query"], init_lora_weights=False),
    )
    model.save_pretrained(tmp_path / "ours")
    register_adapter(tmp_path / "ours", name="ours", base=tiny_base)
    ids = torch.tensor([[5, 6, 7]])
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(
            load("ours")(input_ids=ids).last_hidden_state, model(input_ids=ids).last_hidden_state
        )


def test_a_classifier_with_three_classes_loads_with_its_label_names(
    registry_env, tiny_base, tmp_path
) -> None:
    from transformers import AutoModelForSequenceClassification

    from adapterlab import LoraConfig, TaskType, get_peft_model
    from adapterlab.labels import write_labels

    names = ["billing", "delivery", "praise"]
    torch.manual_seed(0)
    base = AutoModelForSequenceClassification.from_pretrained(tiny_base, num_labels=3)
    model = get_peft_model(base, LoraConfig(task_type=TaskType.SEQ_CLS, r=2, target_modules=["query"]))
    model.save_pretrained(tmp_path / "three")
    write_labels(tmp_path / "three", names)
    register_adapter(tmp_path / "three", name="three", base=tiny_base, task_type="SEQ_CLS")

    loaded = load("three")
    ids = torch.tensor([[5, 6, 7]])
    model.eval()
    with torch.no_grad():
        expected = model(input_ids=ids).logits
        got = loaded(input_ids=ids).logits
    assert got.shape == (1, 3)
    torch.testing.assert_close(got, expected)
    assert [loaded.config.id2label[i] for i in range(3)] == names
