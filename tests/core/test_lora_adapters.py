"""Several adapters on one model: add, switch, disable, delete, mixed batches, weighted combinations."""

from __future__ import annotations

import pytest
import torch
from core_bases import make_base, make_inputs, output_of, randomize_adapters

from adapterlab import LoraConfig, PeftModel, get_peft_model
from adapterlab.errors import InvalidConfig

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _two_adapter_llama() -> tuple[PeftModel, torch.nn.Module]:
    base = make_base("llama")
    reference = make_base("llama")
    model = get_peft_model(base, LoraConfig(task_type="CAUSAL_LM", r=4, target_modules=["q_proj", "v_proj"]))
    model.add_adapter(
        "other", LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=16, target_modules=["q_proj", "o_proj"])
    )
    randomize_adapters(model, seed=3)
    return model, reference


@pytest.fixture(scope="module")
def two_adapters():
    return _two_adapter_llama()


def test_only_the_active_adapter_runs_and_trains(two_adapters) -> None:
    model, reference = two_adapters
    inputs = make_inputs("decoder")
    default_out = output_of(model, inputs)
    assert model.active_adapter == "default"
    assert all(".default." in n for n, p in model.named_parameters() if p.requires_grad)
    model.set_adapter("other")
    other_out = output_of(model, inputs)
    assert all(".other." in n for n, p in model.named_parameters() if p.requires_grad)
    assert not torch.allclose(default_out, other_out, atol=1e-4)
    model.set_adapter("default")
    torch.testing.assert_close(output_of(model, inputs), default_out)
    with model.disable_adapter():
        torch.testing.assert_close(output_of(model, inputs), output_of(reference, inputs), rtol=0, atol=1e-6)
    torch.testing.assert_close(output_of(model, inputs), default_out)


def test_disable_adapter_also_undoes_a_merge(two_adapters) -> None:
    model, reference = two_adapters
    inputs = make_inputs("decoder")
    model.merge_adapter()
    with model.disable_adapter():
        torch.testing.assert_close(output_of(model, inputs), output_of(reference, inputs), rtol=0, atol=1e-5)
    model.unmerge_adapter()


def test_mixed_batch_gives_each_row_its_adapter(two_adapters) -> None:
    model, reference = two_adapters
    model.eval()  # mixed batches are for inference (HF PEFT refuses them in training mode)
    inputs = make_inputs("decoder", batch=3)
    per_adapter = {}
    for name in ("default", "other"):
        model.set_adapter(name)
        per_adapter[name] = output_of(model, inputs)
    model.set_adapter("default")
    per_adapter["__base__"] = output_of(reference, inputs)
    names = ["other", "__base__", "default"]
    mixed = output_of(model, inputs, adapter_names=names)
    for row, name in enumerate(names):
        torch.testing.assert_close(mixed[row], per_adapter[name][row], rtol=0, atol=1e-5)


def test_mixed_batch_in_generate(two_adapters) -> None:
    model, _ = two_adapters
    model.eval()
    ids = make_inputs("decoder", batch=2)["input_ids"]
    settings = dict(max_new_tokens=4, do_sample=False, pad_token_id=0)
    expected = []
    for row, name in enumerate(["other", "default"]):
        model.set_adapter(name)
        expected.append(model.generate(input_ids=ids[row : row + 1], **settings)[0])
    model.set_adapter("default")
    mixed = model.generate(input_ids=ids, adapter_names=["other", "default"], **settings)
    for row in range(2):
        assert torch.equal(mixed[row], expected[row])
    beams = model.generate(input_ids=ids, adapter_names=["other", "default"], num_beams=2, **settings)
    assert beams.shape[0] == 2


def test_mixed_batch_is_refused_in_training_mode(two_adapters) -> None:
    model, _ = two_adapters
    model.train()
    with pytest.raises(InvalidConfig, match="training mode"):
        output_of(model, make_inputs("decoder"), adapter_names=["default"] * 3)
    assert isinstance(InvalidConfig("x"), ValueError)  # HF PEFT raises ValueError here


def test_mixed_batch_is_refused_while_merged(two_adapters) -> None:
    model, _ = two_adapters
    model.eval()
    model.merge_adapter()
    try:
        with pytest.raises(InvalidConfig, match="unmerge_adapter"):
            output_of(model, make_inputs("decoder"), adapter_names=["default"] * 3)
    finally:
        model.unmerge_adapter()


@pytest.mark.parametrize("combination", ["linear", "cat", "svd"])
def test_weighted_adapter_of_one_adapter_reproduces_it(combination) -> None:
    model, _ = _two_adapter_llama()
    inputs = make_inputs("decoder")
    expected = output_of(model, inputs)
    model.add_weighted_adapter(["default"], [1.0], "copy", combination_type=combination)
    model.set_adapter("copy")
    torch.testing.assert_close(output_of(model, inputs), expected, rtol=1e-4, atol=1e-5)


def test_weighted_combinations_equal_the_weighted_sum_of_updates() -> None:
    model, _ = _two_adapter_llama()
    model.add_adapter("third", LoraConfig(task_type="CAUSAL_LM", r=4, target_modules=["q_proj", "v_proj"]))
    randomize_adapters(model, seed=9)
    weights = {"default": 0.7, "third": -0.4}
    model.add_weighted_adapter(list(weights), list(weights.values()), "lin", combination_type="linear")
    model.add_weighted_adapter(list(weights), list(weights.values()), "cat", combination_type="cat")
    model.add_weighted_adapter(["default", "other"], [0.5, 0.5], "svd", combination_type="svd", svd_rank=8)
    layer = model.get_base_model().model.layers[0].self_attn.q_proj
    assert layer.r["cat"] == 8 and layer.r["svd"] == 8
    cat_expected = sum(w * layer.get_delta_weight(n) for n, w in weights.items())
    torch.testing.assert_close(layer.get_delta_weight("cat"), cat_expected, rtol=1e-4, atol=1e-6)
    svd_expected = sum(0.5 * layer.get_delta_weight(n) for n in ("default", "other"))
    torch.testing.assert_close(layer.get_delta_weight("svd"), svd_expected, rtol=1e-4, atol=1e-5)
    assert model.peft_config["svd"].target_modules == ["o_proj", "q_proj", "v_proj"]
    assert model.base_model.model.model.layers[0].self_attn.o_proj.r == {"other": 4, "svd": 8}
    with pytest.raises(InvalidConfig, match="one rank"):
        model.add_weighted_adapter(["default", "cat"], [1.0, 1.0], "bad", combination_type="linear")


def test_delete_adapter_and_load_adapter_from_a_subfolder(tmp_path) -> None:
    model, _ = _two_adapter_llama()
    inputs = make_inputs("decoder")
    model.set_adapter("other")
    other_out = output_of(model, inputs)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "other" / "adapter_model.safetensors").is_file()
    assert (tmp_path / "adapter_model.safetensors").is_file()
    model.delete_adapter("other")
    assert list(model.peft_config) == ["default"] and model.active_adapter == "default"
    assert not any(".other" in n for n, _ in model.named_parameters())
    model.load_adapter(tmp_path / "other", adapter_name="again")
    assert model.active_adapter == "default"
    model.set_adapter("again")
    torch.testing.assert_close(output_of(model, inputs), other_out, rtol=0, atol=1e-6)
    fresh = PeftModel.from_pretrained(make_base("llama"), tmp_path, subfolder="other", adapter_name="x")
    torch.testing.assert_close(output_of(fresh, inputs), other_out, rtol=0, atol=1e-6)


def test_unload_restores_the_plain_base() -> None:
    model, reference = _two_adapter_llama()
    inputs = make_inputs("decoder")
    plain = model.unload()
    assert type(plain.model.layers[0].self_attn.q_proj) is torch.nn.Linear
    torch.testing.assert_close(output_of(plain, inputs), output_of(reference, inputs), rtol=0, atol=1e-6)


def test_generate_for_seq2seq_and_causal_lm() -> None:
    t5 = get_peft_model(make_base("t5"), LoraConfig(task_type="SEQ_2_SEQ_LM", r=2)).eval()
    randomize_adapters(t5)
    ids = make_inputs("seq2seq")["input_ids"]
    out = t5.generate(input_ids=ids, max_new_tokens=3, do_sample=False)
    assert out.shape[0] == 3 and out.shape[1] <= 4
    mixed = t5.generate(
        input_ids=ids, max_new_tokens=3, do_sample=False, adapter_names=["default", "__base__", "default"]
    )
    torch.testing.assert_close(mixed[0], out[0])
    gpt2 = get_peft_model(make_base("gpt2"), LoraConfig(task_type="CAUSAL_LM", r=2))
    gen = gpt2.generate(input_ids=ids, max_new_tokens=3, do_sample=False, pad_token_id=0)
    assert gen.shape == (3, ids.shape[1] + 3)


def test_every_layer_holding_adapters_is_an_adapter_layer() -> None:
    from adapterlab.tuners.lora.layer import LoraLayer
    from adapterlab.tuners.lora.trainable_tokens import TrainableTokensWrapper
    from adapterlab.tuners.mixed_batch import AdapterLayer, adapter_layers
    from adapterlab.tuners.modules_to_save import ModulesToSaveWrapper

    base = make_base("llama")
    config = LoraConfig(
        target_modules=["q_proj", "v_proj"], modules_to_save=["lm_head"], trainable_token_indices=[1, 2]
    )
    model = get_peft_model(base, config)
    found = adapter_layers(model)
    kinds = {LoraLayer: 0, ModulesToSaveWrapper: 0, TrainableTokensWrapper: 0}
    for layer in found:
        kinds[next(kind for kind in kinds if isinstance(layer, kind))] += 1
    assert all(kinds.values()), kinds  # each kind of adapter layer is found
    assert len(found) == sum(kinds.values())
    assert not isinstance(torch.nn.Linear(2, 2), AdapterLayer)
    assert {id(m) for m in model.base_model.adapter_aware_layers()} == {id(m) for m in found}
