"""The LoRA invariants on every base of the matrix: tiny BERT, GPT-2 (Conv1D), T5, Llama, the real MiniLM."""

from __future__ import annotations

import copy
import subprocess
import sys
import textwrap

import pytest
import torch
from core_bases import BASES, make_base, make_inputs, output_of, randomize_adapters

from adapterlab import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict
from adapterlab.tuners.modules_to_save import ModulesToSaveWrapper

MATRIX = list(BASES)


def _peft(name: str, **overrides) -> tuple[torch.nn.Module, PeftModel, dict]:
    base = make_base(name)
    kind = BASES[name][2]
    reference = copy.deepcopy(base)
    config = LoraConfig(task_type=BASES[name][1], r=4, lora_alpha=8, **overrides)
    return reference, get_peft_model(base, config), make_inputs(kind)


@pytest.fixture(scope="module", params=MATRIX)
def adapted(request):
    reference, model, inputs = _peft(request.param)
    return request.param, reference, model, inputs


def test_output_at_init_equals_the_base(adapted) -> None:
    _, reference, model, inputs = adapted
    torch.testing.assert_close(output_of(model, inputs), output_of(reference, inputs), rtol=0, atol=1e-6)


def test_merged_output_equals_unmerged_and_unmerge_restores_weights(adapted) -> None:
    name, reference, model, inputs = adapted
    randomize_adapters(model)
    unmerged = output_of(model, inputs)
    assert not torch.allclose(unmerged, output_of(reference, inputs), atol=1e-4)
    before = {k: v.clone() for k, v in model.get_base_model().state_dict().items() if "base_layer" in k}
    model.merge_adapter()
    torch.testing.assert_close(output_of(model, inputs), unmerged, rtol=1e-4, atol=1e-5)
    model.unmerge_adapter()
    after = model.get_base_model().state_dict()
    for key, value in before.items():
        torch.testing.assert_close(after[key], value, rtol=0, atol=1e-6)
    torch.testing.assert_close(output_of(model, inputs), unmerged, rtol=0, atol=1e-5)


def test_only_adapter_parameters_and_heads_train(adapted) -> None:
    name, _, model, _ = adapted
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable
    for param_name in trainable:
        assert ".lora_" in param_name or ".modules_to_save.default." in param_name, param_name
    heads = [m for m in model.modules() if isinstance(m, ModulesToSaveWrapper)]
    assert bool(heads) == (name == "bert")  # the SEQ_CLS head joins automatically


def test_state_dict_holds_only_adapter_keys(adapted) -> None:
    name, _, model, _ = adapted
    state = get_peft_model_state_dict(model)
    assert state and all(k.startswith("base_model.model.") for k in state)
    for key in state:
        assert key.endswith((".lora_A.weight", ".lora_B.weight")) or key.startswith(
            "base_model.model.classifier."
        ), key
        assert ".default" not in key


def test_save_and_load_round_trip(adapted, tmp_path) -> None:
    name, _, model, inputs = adapted
    randomize_adapters(model, seed=5)
    expected = output_of(model, inputs)
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    loaded = PeftModel.from_pretrained(make_base(name), tmp_path)
    torch.testing.assert_close(
        output_of(loaded, inputs), expected, rtol=0, atol=1e-5
    )  # merge+unmerge ran before
    assert loaded.get_nb_trainable_parameters()[0] == 0  # loaded for inference: frozen
    trainable = PeftModel.from_pretrained(make_base(name), tmp_path, is_trainable=True)
    assert trainable.get_nb_trainable_parameters() == model.get_nb_trainable_parameters()


def test_merge_and_unload_gives_the_plain_model_with_the_adapted_output(adapted) -> None:
    name, _, model, inputs = adapted
    randomize_adapters(model, seed=6)
    expected = output_of(model, inputs)
    plain = model.merge_and_unload()
    assert not any("lora_" in n for n, _ in plain.named_parameters())
    torch.testing.assert_close(output_of(plain, inputs), expected, rtol=1e-4, atol=1e-5)


FRESH_PROCESS = textwrap.dedent(
    """
    import sys, torch
    sys.path.insert(0, {tests!r})
    from core_bases import make_base, make_inputs, output_of
    from adapterlab import PeftModel
    model = PeftModel.from_pretrained(make_base("gpt2"), {folder!r})
    expected = torch.load({expected!r})
    torch.testing.assert_close(output_of(model, make_inputs("decoder")), expected, rtol=0, atol=1e-6)
    print(type(model).__name__)
    """
)


def test_an_adapter_saved_here_loads_in_a_fresh_process(tmp_path) -> None:
    _, model, inputs = _peft("gpt2")
    randomize_adapters(model)
    model.save_pretrained(tmp_path / "adapter")
    torch.save(output_of(model, inputs), tmp_path / "expected.pt")
    code = FRESH_PROCESS.format(
        tests=str(__import__("pathlib").Path(__file__).parent),
        folder=str(tmp_path / "adapter"),
        expected=str(tmp_path / "expected.pt"),
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "PeftModelForCausalLM"
