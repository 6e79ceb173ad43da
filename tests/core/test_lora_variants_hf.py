"""LoRA's variants KaSA, MiCA, VeLoRA and BD-LoRA (adapterlab.tuners.lora.variants): they train, save,
load and merge; adapters written by Hugging Face PEFT load with identical outputs and the reverse;
what each does to the base, the factors and the gradients; bad values give one-line errors."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

import adapterlab
from adapterlab import BdLoraConfig, KasaConfig, LoraConfig, PeftModel, VeloraConfig, get_peft_model
from adapterlab.errors import InvalidConfig, InvalidConfigType, UnsupportedFeature

peft = pytest.importorskip("peft")


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(12, 16)
        self.lin0 = nn.Linear(16, 12)
        self.lin1 = nn.Linear(12, 8)
        self.conv = Conv1D(4, 8)  # transformers' (in, out) layer: in 8, out 4

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.conv(self.lin1(torch.relu(self.lin0(self.emb(ids)))))


IDS = torch.tensor([[1, 3, 5, 7], [2, 4, 6, 11]])

# variant -> LoraConfig kwargs (for both libraries: sub-configs as dicts, which each turns into its class)
VARIANTS: dict[str, dict[str, Any]] = {
    "kasa": {"target_modules": ["lin0", "lin1"], "r": 4, "kasa_config": {}},
    "mica": {"target_modules": ["lin0", "lin1", "emb", "conv"], "r": 4, "init_lora_weights": "mica"},
    "velora": {"target_modules": ["lin0", "lin1", "conv"], "velora_config": {"num_groups": 3}},
    "bdlora": {
        "target_modules": ["lin0", "lin1"],
        "use_bdlora": {"target_modules_bd_a": ["lin1"], "target_modules_bd_b": ["lin0"], "nblocks": 2},
    },
}


@pytest.fixture
def base() -> MLP:
    torch.manual_seed(0)
    return MLP().eval()


def _output(model: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(IDS)


def _train(model: nn.Module, steps: int = 3) -> None:
    model.train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    for _ in range(steps):
        optimizer.zero_grad()
        (model(IDS) - 1).pow(2).sum().backward()
        optimizer.step()
    model.eval()


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_a_variant_trains_saves_loads_and_merges(variant: str, base: MLP, tmp_path: Path) -> None:
    original = copy.deepcopy(base)
    model = get_peft_model(base, LoraConfig(**copy.deepcopy(VARIANTS[variant])))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    _train(model)
    for name, param in model.named_parameters():
        changed = not torch.equal(before[name], param)
        assert changed == param.requires_grad, name  # what trains moves; the base and MiCA's B do not
    trained = _output(model)
    model.save_pretrained(tmp_path)

    loaded = PeftModel.from_pretrained(copy.deepcopy(original), tmp_path)  # KaSA truncates it again
    torch.testing.assert_close(_output(loaded), trained, rtol=0, atol=1e-6)
    loaded.merge_adapter()
    torch.testing.assert_close(_output(loaded), trained, rtol=0, atol=1e-5)
    loaded.unmerge_adapter()
    torch.testing.assert_close(_output(loaded), trained, rtol=0, atol=1e-5)
    merged = loaded.merge_and_unload()
    assert not any("lora" in name for name, _ in merged.named_modules())
    torch.testing.assert_close(_output(merged), trained, rtol=0, atol=1e-5)


def _randomize_trainable(model: nn.Module) -> None:
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for _, param in sorted(model.named_parameters()):
            if param.requires_grad:
                param.add_(torch.randn(param.shape, generator=gen) * 0.3)


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("writer_name", ["peft", "adapterlab"])
def test_an_adapter_written_by_either_library_loads_in_the_other(
    variant: str, writer_name: str, base: MLP, tmp_path: Path
) -> None:
    writer, reader = (peft, adapterlab) if writer_name == "peft" else (adapterlab, peft)
    original = copy.deepcopy(base)
    model = writer.get_peft_model(base, writer.LoraConfig(**copy.deepcopy(VARIANTS[variant])))
    _train(model, steps=1)  # VeLoRA's projections are set by a training forward
    _randomize_trainable(model)
    expected = _output(model)
    assert not torch.allclose(expected, _output(original), atol=1e-3)
    model.save_pretrained(tmp_path)

    loaded = reader.PeftModel.from_pretrained(copy.deepcopy(original), tmp_path).eval()
    torch.testing.assert_close(_output(loaded), expected, rtol=0, atol=1e-6)
    written = {k: v for k, v in model.state_dict().items() if "lora_" in k}
    read = {k: v for k, v in loaded.state_dict().items() if "lora_" in k}
    assert written.keys() == read.keys()
    for key, value in written.items():
        torch.testing.assert_close(read[key], value, rtol=0, atol=0, msg=key)


def test_a_saved_config_holds_hf_s_sub_configs_and_reads_back(tmp_path: Path) -> None:
    config = LoraConfig(
        target_modules=["lin0"],
        velora_config=VeloraConfig(num_groups=2, init_type="random"),
    )
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    reference = peft.LoraConfig(
        target_modules=["lin0"], velora_config=peft.VeloraConfig(num_groups=2, init_type="random")
    )
    assert saved["velora_config"] == {"init_type": "random", "num_groups": 2, "scale": 1.0}
    assert saved["velora_config"] == json.loads(json.dumps(reference.to_dict()["velora_config"]))
    assert LoraConfig.from_pretrained(tmp_path).velora_config == VeloraConfig(
        num_groups=2, init_type="random"
    )
    bd = LoraConfig(target_modules=["lin0"], use_bdlora={"target_modules_bd_a": ["lin0"], "nblocks": 2})
    assert bd.use_bdlora == BdLoraConfig(target_modules_bd_a=["lin0"], nblocks=2)
    assert LoraConfig(kasa_config={"beta": 0.5}).kasa_config == KasaConfig(beta=0.5, gamma=1e-3)


# -- what each variant does ------------------------------------------------------------------------


def test_kasa_drops_the_r_smallest_singular_directions_and_learns_a_diagonal(base: MLP) -> None:
    singular = torch.linalg.svdvals(base.lin0.weight.detach())
    original = copy.deepcopy(base)
    model = get_peft_model(base, LoraConfig(target_modules=["lin0"], r=4, kasa_config=KasaConfig()))
    layer = model.base_model.model.lin0
    truncated = torch.linalg.svdvals(layer.base_layer.weight.detach())
    torch.testing.assert_close(truncated[:8], singular[:8], rtol=1e-5, atol=1e-5)
    assert truncated[8:].abs().max() < 1e-5
    with model.disable_adapter():  # the base itself changed: disabling does not bring it back
        assert not torch.allclose(_output(model), _output(original), atol=1e-4)
    assert layer.lora_diag["default"].shape == (4,) and layer.lora_diag["default"].requires_grad
    with torch.no_grad():
        layer.lora_B["default"].weight.normal_()
    a, b, diag = layer.lora_A["default"].weight, layer.lora_B["default"].weight, layer.lora_diag["default"]
    torch.testing.assert_close(
        layer.get_delta_weight("default"), b @ torch.diag(diag) @ a * layer.scaling["default"]
    )


def test_kasa_loss_is_the_papers_two_regularizers(base: MLP) -> None:
    config = LoraConfig(target_modules=["lin0", "lin1"], r=4, kasa_config=KasaConfig(beta=0.5, gamma=0.25))
    model = get_peft_model(base, config)
    expected = 0.0
    for layer in (model.base_model.model.lin0, model.base_model.model.lin1):
        a, b, diag = (
            layer.lora_A["default"].weight,
            layer.lora_B["default"].weight,
            layer.lora_diag["default"],
        )
        eye = torch.eye(4)
        orthogonality = torch.linalg.norm(b.T @ b - eye) + torch.linalg.norm(a @ a.T - eye)
        expected = expected + 0.5 * diag.pow(2).sum() + 0.25 * orthogonality
    loss = model._get_kasa_loss()
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert model.base_model.model.lin0.lora_diag["default"].grad is not None
    assert get_peft_model(MLP(), LoraConfig(target_modules=["lin0"]))._get_kasa_loss() == 0.0


def test_mica_starts_b_at_the_minor_left_singular_vectors_and_keeps_it_frozen(base: MLP) -> None:
    reference = _output(base)
    u, _, _ = torch.linalg.svd(base.lin0.weight.detach())
    model = get_peft_model(base, LoraConfig(target_modules=["lin0", "emb"], r=4, init_lora_weights="mica"))
    torch.testing.assert_close(_output(model), reference, rtol=0, atol=0)  # A is zero: the base's output
    lin0 = model.base_model.model.lin0
    b = lin0.lora_B["default"].weight
    torch.testing.assert_close(b @ b.T, u[:, -4:] @ u[:, -4:].T, rtol=0, atol=1e-5)  # same subspace
    assert not torch.any(lin0.lora_A["default"].weight)
    model.add_adapter("other", LoraConfig(target_modules=["lin0"], r=4, init_lora_weights="mica"))
    for active in ("other", "default"):
        model.set_adapter(active)
        trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
        expected = ["lin0.lora_A", "emb.lora_embedding_A"] if active == "default" else ["lin0.lora_A"]
        assert len(trainable) == len(expected) and all(f".{active}" in n for n in trainable)
        assert not any("lora_B" in n or "lora_embedding_B" in n for n in trainable)
    model.delete_adapter("other")
    assert "other" not in lin0.frozen_peft_weight_names


def test_velora_compresses_only_the_backward_of_lora_a(base: MLP) -> None:
    def grads(num_groups: int | None) -> dict[str, torch.Tensor]:
        velora = {"velora_config": VeloraConfig(num_groups=num_groups)} if num_groups else {}
        torch.manual_seed(3)  # the same random A and B for each
        model = get_peft_model(
            copy.deepcopy(base), LoraConfig(target_modules=["lin1"], init_lora_weights=False, **velora)
        )
        model.train()
        model(IDS).pow(2).sum().backward()
        return {n: p.grad for n, p in model.named_parameters() if p.grad is not None}

    plain, exact, compressed = grads(None), grads(16), grads(2)
    # one feature per group: the rebuilt input is the input, so the gradients are LoRA's own
    for name in plain:
        torch.testing.assert_close(exact[name], plain[name], rtol=1e-5, atol=1e-6)
    assert torch.equal(
        compressed["base_model.model.lin1.lora_B.default.weight"],
        plain["base_model.model.lin1.lora_B.default.weight"],
    )
    assert not torch.allclose(
        compressed["base_model.model.lin1.lora_A.default.weight"],
        plain["base_model.model.lin1.lora_A.default.weight"],
    )


@pytest.mark.parametrize("init_type", ["batch_average", "batch_average_once", "random"])
def test_velora_gradients_and_projections_match_hf_peft(init_type: str, base: MLP, tmp_path: Path) -> None:
    results = []
    for lib in (peft, adapterlab):
        if lib is peft:
            config = {"num_groups": 3, "init_type": init_type}
            model = peft.get_peft_model(
                copy.deepcopy(base), peft.LoraConfig(target_modules=["lin0", "conv"], velora_config=config)
            )
            _randomize_trainable(model)
            model.save_pretrained(tmp_path)
        else:  # the same starting tensors as HF's, whatever each library draws
            model = adapterlab.PeftModel.from_pretrained(copy.deepcopy(base), tmp_path, is_trainable=True)
        model.train()
        for ids in (IDS, IDS.flip(0) % 7):
            model.zero_grad()
            model(ids).pow(2).sum().backward()
        grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        buffers = {n: b.clone() for n, b in model.named_buffers() if "velora" in n}
        results.append((grads, buffers))
    (hf_grads, hf_buffers), (our_grads, our_buffers) = results
    assert hf_grads.keys() == our_grads.keys() and hf_buffers.keys() == our_buffers.keys()
    for name in hf_grads:
        torch.testing.assert_close(our_grads[name], hf_grads[name], rtol=1e-5, atol=1e-6, msg=name)
    for name in hf_buffers:
        torch.testing.assert_close(our_buffers[name], hf_buffers[name], rtol=1e-6, atol=1e-7, msg=name)


def test_bdlora_factors_are_block_diagonal(base: MLP) -> None:
    model = get_peft_model(base, LoraConfig(init_lora_weights=False, **copy.deepcopy(VARIANTS["bdlora"])))
    lin0, lin1 = model.base_model.model.lin0, model.base_model.model.lin1
    assert lin1.lora_A["default"].weight.shape == (8, 6)  # (r, in / nblocks)
    assert lin0.lora_B["default"].weight.shape == (12, 4)  # (out, r / nblocks)
    assert not torch.any(lin0.lora_B["default"].weight)  # a block-diagonal B starts at zero
    with torch.no_grad():
        lin0.lora_B["default"].weight.normal_()
    for layer, factor in ((lin1, "lora_A"), (lin0, "lora_B")):
        module = getattr(layer, factor)["default"]
        dense = module.weight_as_blockdiagonal_matrix()
        rows, cols = dense.shape[0] // 2, dense.shape[1] // 2
        assert not torch.any(dense[:rows, cols:]) and not torch.any(dense[rows:, :cols])
        x = torch.randn(3, dense.shape[1])
        torch.testing.assert_close(module(x), x @ dense.T)


# -- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build, error, message",
    [
        (lambda: KasaConfig(beta=-1.0), InvalidConfig, "`beta` must be non-negative"),
        (lambda: VeloraConfig(num_groups=0), InvalidConfig, "`num_groups` should be positive, got 0. Give"),
        (lambda: VeloraConfig(scale=0), InvalidConfig, "`scale` should be positive"),
        (
            lambda: VeloraConfig(init_type="mean"),
            InvalidConfig,
            "Unsupported `init_type` 'mean'. Supported values are 'batch_average_once', 'batch_average', "
            "and 'random'",
        ),
        (lambda: BdLoraConfig(nblocks=0), InvalidConfig, "`nblocks` must be a positive integer"),
        (
            lambda: BdLoraConfig(target_modules_bd_a=["q"], target_modules_bd_b=["q"]),
            InvalidConfig,
            "overlapping modules",
        ),
        (lambda: LoraConfig(kasa_config=123), InvalidConfigType, "`kasa_config` must be a `KasaConfig`"),
        (
            lambda: LoraConfig(use_dora=True, kasa_config=KasaConfig()),
            InvalidConfig,
            "use_dora and kasa_config cannot be combined",
        ),
        (
            lambda: LoraConfig(init_lora_weights="mica", velora_config=VeloraConfig()),
            InvalidConfig,
            "velora_config and mica cannot be combined",
        ),
        (
            lambda: LoraConfig(init_lora_weights="pissa", kasa_config=KasaConfig()),
            InvalidConfig,
            "kasa_config works with init_lora_weights True, False or 'gaussian'",
        ),
        (
            lambda: LoraConfig(lora_bias=True, use_bdlora=BdLoraConfig()),
            InvalidConfig,
            "lora_bias=True is not supported with BD-LoRA",
        ),
    ],
)
def test_bad_variant_configs_are_refused_in_one_line(build: Any, error: type, message: str) -> None:
    with pytest.raises(error, match=message) as excinfo:
        build()
    assert "\n" not in str(excinfo.value)


@pytest.mark.parametrize(
    "options, error, message",
    [
        (
            {"target_modules": ["lin0", "lin1"], "r": 8, "kasa_config": {}},
            InvalidConfig,
            "KaSA requires `r` \\(8\\)",
        ),
        (
            {"target_modules": ["conv"], "kasa_config": {}},
            UnsupportedFeature,
            "KaSA is not supported on Conv1D",
        ),
        (
            {"target_modules": ["emb"], "kasa_config": {}},
            UnsupportedFeature,
            "KaSA is not supported on Embedding",
        ),
        (
            {"target_modules": ["lin1"], "r": 9, "init_lora_weights": "mica"},
            InvalidConfig,
            "MiCA requires `r` <=",
        ),
        (
            {"target_modules": ["emb"], "velora_config": {}},
            UnsupportedFeature,
            "VeLoRA is not supported on Embedding",
        ),
        (
            {"target_modules": ["lin0", "lin1"], "use_bdlora": {"target_modules_bd_a": ["lin0"]}},
            InvalidConfig,
            "'lin1' matches neither A nor B",
        ),
        (
            {
                "target_modules": ["lin0"],
                "use_bdlora": {"target_modules_bd_a": ["lin"], "target_modules_bd_b": ["0"]},
            },
            InvalidConfig,
            "'lin0' matches both A and B",
        ),
        (
            {"target_modules": ["lin1"], "use_bdlora": {"target_modules_bd_a": ["lin1"], "nblocks": 5}},
            InvalidConfig,
            "not divisible by nblocks=5 \\(into that many blocks\\)",
        ),
    ],
)
def test_a_variant_that_cannot_go_on_a_target_is_refused_before_anything_changes(
    options: dict[str, Any], error: type, message: str, base: MLP
) -> None:
    weights = {k: v.clone() for k, v in base.state_dict().items()}
    with pytest.raises(error, match=message) as excinfo:
        get_peft_model(base, LoraConfig(**options))
    assert "\n" not in str(excinfo.value)
    assert all(torch.equal(base.state_dict()[k], v) for k, v in weights.items())  # lin0 not truncated
    assert not any("lora" in name for name, _ in base.named_modules())


def test_kasa_and_plain_adapters_cannot_share_a_model(base: MLP) -> None:
    model = get_peft_model(base, LoraConfig(target_modules=["lin0"], r=4, kasa_config=KasaConfig()))
    with pytest.raises(InvalidConfig, match="KaSA cannot be combined with adapters that don't use KaSA"):
        model.add_adapter("plain", LoraConfig(target_modules=["lin0"]))
    assert list(model.peft_config) == ["default"]
    model.add_adapter("second", LoraConfig(target_modules=["lin1"], r=2, kasa_config=KasaConfig()))
    with pytest.raises(UnsupportedFeature, match="cannot combine KaSA or BD-LoRA adapters"):
        model.add_weighted_adapter(["default", "second"], [1.0, 1.0], "mix", combination_type="cat")


def test_mica_needs_a_float_weight_it_can_decompose(base: MLP) -> None:
    base.lin0.double()
    with pytest.raises(InvalidConfigType, match="MiCA initializes from the base weight's SVD") as excinfo:
        get_peft_model(base, LoraConfig(target_modules=["lin0"], r=4, init_lora_weights="mica"))
    assert isinstance(excinfo.value, TypeError)  # HF PEFT raises TypeError there


def test_the_variant_configs_are_exported_where_hf_peft_has_them() -> None:
    from adapterlab.tuners import lora
    from adapterlab.tuners.lora import config, variants

    assert lora.KasaConfig is adapterlab.KasaConfig and lora.VeloraConfig is adapterlab.VeloraConfig
    assert config.BdLoraConfig is adapterlab.BdLoraConfig is lora.BdLoraConfig
    assert variants.BlockDiagonalLinear(4, 2, nblocks=2, init_zero=True).weight.shape == (2, 2)
