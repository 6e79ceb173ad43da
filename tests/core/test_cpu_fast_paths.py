"""The CPU fast paths (adapterlab.tuners.cpu_fast_paths) equal the plain paths they replace, run only on
CPU, and turn off with their switch; live rows is opt-in and undone when the prompt adapter goes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from core_bases import bert_config, make_base
from transformers import BertForSequenceClassification

import adapterlab
from adapterlab import LoraConfig, get_peft_model
from adapterlab.tuners import cpu_fast_paths
from adapterlab.tuners.lora.layer import Linear


@pytest.fixture(autouse=True)
def default_switches(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(cpu_fast_paths.ENABLED_ENV, raising=False)
    monkeypatch.delenv(cpu_fast_paths.LIVE_ROWS_ENV, raising=False)
    cpu_fast_paths.configure()
    yield
    cpu_fast_paths.configure()


def _layer(dropout: float) -> Linear:
    torch.manual_seed(0)
    layer = Linear(torch.nn.Linear(12, 10, dtype=torch.double))
    layer.add_adapter("default", r=4, alpha=8, dropout=dropout, use_rslora=False)
    layer.active_adapters = ["default"]
    torch.nn.init.normal_(layer.lora_B["default"].weight)  # else B = 0 hides any difference
    return layer.train()


def _output_and_grads(layer: Linear, x: torch.Tensor) -> list[torch.Tensor]:
    out = layer(x)
    a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    return [out.detach(), *torch.autograd.grad(out.square().sum(), (x, a, b))]


def _fast_and_plain(layer: Linear, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    calls = []
    original = cpu_fast_paths.low_rank_update

    def spy(*args: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return original(*args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cpu_fast_paths, "low_rank_update", spy)
        fast = _output_and_grads(layer, x)
        assert calls, "the fast path did not run"
        cpu_fast_paths.configure(enabled=False)
        plain = _output_and_grads(layer, x)
        assert len(calls) == 1, "the switch did not turn the fast path off"
    return fast, plain


def test_the_fused_update_equals_the_plain_forward_and_gradients_without_dropout() -> None:
    layer = _layer(dropout=0.0)
    x = torch.randn(5, 7, 12, dtype=torch.double, requires_grad=True)
    fast, plain = _fast_and_plain(layer, x)
    for got, want in zip(fast, plain, strict=True):
        torch.testing.assert_close(got, want)


def test_the_fused_update_equals_the_plain_forward_and_gradients_with_a_fixed_mask(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    layer = _layer(dropout=0.3)
    x = torch.randn(5, 7, 12, dtype=torch.double, requires_grad=True)
    mask = (torch.rand(x.shape, generator=torch.Generator().manual_seed(5)) > 0.3).to(torch.uint8)
    scale = 1 / 0.7
    monkeypatch.setattr(cpu_fast_paths, "keep_mask", lambda x, p: (mask, scale))

    class FixedMaskDropout(torch.nn.Module):  # the plain path's nn.Dropout, drawing the same mask
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * mask * scale

    fast = _output_and_grads(layer, x)
    layer.lora_dropout["default"] = FixedMaskDropout()  # a module of the user's own: the plain path runs
    plain = _output_and_grads(layer, x)
    for got, want in zip(fast, plain, strict=True):
        torch.testing.assert_close(got, want)


def test_the_keep_mask_drops_p_keeps_the_mean_and_follows_torch_manual_seed() -> None:
    x = torch.ones(400, 500)
    torch.manual_seed(3)
    mask, scale = cpu_fast_paths.keep_mask(x, 0.1)
    assert mask.dtype == torch.uint8 and set(mask.unique().tolist()) <= {0, 1}
    assert (mask == 0).float().mean().item() == pytest.approx(0.1, abs=0.005)
    assert (x * mask * scale).mean().item() == pytest.approx(1.0, abs=0.01)
    torch.manual_seed(3)
    assert torch.equal(cpu_fast_paths.keep_mask(x, 0.1)[0], mask)
    assert not torch.equal(cpu_fast_paths.keep_mask(x, 0.1)[0], mask)


@pytest.mark.parametrize("with_mask", [False, True])
def test_the_low_rank_autograd_function_has_the_plain_gradients(with_mask: bool) -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 5, 6, dtype=torch.double, requires_grad=True)
    result = torch.randn(3, 5, 4, dtype=torch.double, requires_grad=True)
    a = torch.randn(2, 6, dtype=torch.double, requires_grad=True)
    b = torch.randn(4, 2, dtype=torch.double, requires_grad=True)
    mask = (torch.rand(3, 5, 6, dtype=torch.double) > 0.3).double() / 0.7 if with_mask else None

    def update(r: torch.Tensor, x: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return cpu_fast_paths.low_rank_update(r, x, mask, a, b)

    assert torch.autograd.gradcheck(update, (result, x, a, b))
    plain = result + ((x if mask is None else x * mask) @ a.T) @ b.T
    torch.testing.assert_close(update(result, x, a, b), plain)


def test_the_fast_path_is_taken_only_on_cpu_and_only_while_switched_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a, b = torch.nn.Linear(6, 2, bias=False), torch.nn.Linear(2, 4, bias=False)
    x, result = torch.randn(3, 6), torch.randn(3, 4)
    dropout = torch.nn.Dropout(0.1)
    assert cpu_fast_paths.takes_lora_linear(x, result, dropout, a, b)
    meta_x, meta_result = x.to("meta"), result.to("meta")  # any non-CPU device
    assert not cpu_fast_paths.takes_lora_linear(meta_x, meta_result, dropout, a.to("meta"), b.to("meta"))
    assert not cpu_fast_paths.takes_lora_linear(x, result, dropout, a, torch.nn.Linear(2, 4))  # lora_bias
    assert not cpu_fast_paths.takes_lora_linear(x, result, torch.nn.AlphaDropout(0.1), a, b)  # user's own
    monkeypatch.setenv(cpu_fast_paths.ENABLED_ENV, "0")
    assert not cpu_fast_paths.enabled() and not cpu_fast_paths.takes_lora_linear(x, result, dropout, a, b)
    cpu_fast_paths.configure(enabled=True)  # the function wins over the environment
    assert cpu_fast_paths.takes_lora_linear(x, result, dropout, a, b)


def test_a_model_trains_to_the_same_weights_with_the_fast_paths_off() -> None:
    def train() -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        model = get_peft_model(make_base("bert"), LoraConfig(r=2, lora_alpha=4, lora_dropout=0.0))
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
        ids = torch.randint(1, 60, (3, 7), generator=torch.Generator().manual_seed(1))
        for _ in range(2):
            model(input_ids=ids, labels=torch.tensor([0, 1, 2])).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    fast = train()
    cpu_fast_paths.configure(enabled=False)
    plain = train()
    assert fast.keys() == plain.keys()
    for name in fast:
        torch.testing.assert_close(fast[name], plain[name], atol=1e-6, rtol=1e-5, msg=name)


# -- live rows: opt-in, undone on delete ----------------------------------------------------------


def _live_layers(model: torch.nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if type(m) in cpu_fast_paths.PLAIN_CLASSES]


def _prompt_model() -> adapterlab.PeftModel:
    base = BertForSequenceClassification(bert_config(num_labels=2, positions=48))
    return get_peft_model(base, adapterlab.PromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=3))


def test_live_rows_is_off_unless_asked_for() -> None:
    assert _live_layers(_prompt_model()) == []


@pytest.mark.parametrize("how", ["configure", "environment"])
def test_live_rows_opted_in_is_undone_when_the_last_prompt_adapter_is_deleted(
    how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if how == "configure":
        cpu_fast_paths.configure(live_rows=True)
    else:
        monkeypatch.setenv(cpu_fast_paths.LIVE_ROWS_ENV, "1")
    model = _prompt_model()
    assert _live_layers(model), "live rows did not wrap any layer"
    model.add_adapter("second", adapterlab.PromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=3))
    model.delete_adapter("default")
    assert _live_layers(model), "a prompt adapter remains: the layers keep the fast backward"
    model.delete_adapter("second")
    assert _live_layers(model) == []
    assert all(type(m) in (torch.nn.Linear,) for n, m in model.named_modules() if n.endswith("output.dense"))


def test_the_master_switch_also_keeps_live_rows_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cpu_fast_paths.LIVE_ROWS_ENV, "1")
    monkeypatch.setenv(cpu_fast_paths.ENABLED_ENV, "0")
    assert _live_layers(_prompt_model()) == []
