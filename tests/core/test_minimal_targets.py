"""A long target_modules list of full names is saved as the few suffixes that select the same modules."""

from __future__ import annotations

import pytest
from torch import nn

from adapterlab import LoraConfig, get_peft_model
from adapterlab.errors import InvalidConfig
from adapterlab.tuners.lora.layer import LoraLayer
from adapterlab.tuners.tuners_utils import _find_minimal_target_modules
from adapterlab.utils import MIN_TARGET_MODULES_FOR_OPTIMIZATION


@pytest.mark.parametrize(
    "targets, others, expected",
    [
        (["bar.baz"], ["foo.bar"], {"baz"}),
        (["1.foo", "2.foo"], ["3.foo"], {"1.foo", "2.foo"}),
        (["a.b.c", "d.e.f", "g.h.i"], ["a.b.x", "d.x.f", "x.h.i"], {"c", "e.f", "g.h.i"}),
        (["foo.bar.baz", "qux.bar.baz"], ["baz.bar.foo"], {"baz"}),
    ],
)
def test_shortest_suffixes_match_every_target_and_no_other(targets, others, expected) -> None:
    assert _find_minimal_target_modules(targets, others) == expected
    assert _find_minimal_target_modules(set(targets), set(others)) == expected


@pytest.mark.parametrize(
    "targets, others, message",
    [
        ([], ["foo"], "list or set of strings"),
        ("foo", ["bar"], "list or set of strings"),
        (["", "foo"], ["bar"], "empty string"),
        (["foo.bar", "spam"], ["foo.bar"], "common elements"),
    ],
)
def test_bad_input_is_an_invalid_config(targets, others, message) -> None:
    with pytest.raises(InvalidConfig, match=message):
        _find_minimal_target_modules(targets, others)


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.query = nn.Linear(4, 4)


class _Outer(nn.Module):
    def __init__(self, n: int) -> None:
        super().__init__()
        # "blocks" is a name suffix of "other_blocks": only a whole-part suffix may be chosen
        self.blocks = nn.ModuleList([_Block() for _ in range(n)])
        self.other_blocks = nn.ModuleList([_Block() for _ in range(n)])


def test_get_peft_model_shortens_a_long_list_and_adapts_the_same_modules() -> None:
    n = MIN_TARGET_MODULES_FOR_OPTIMIZATION + 1
    model = get_peft_model(_Outer(n), LoraConfig(target_modules=[f"blocks.{i}.query" for i in range(n)]))
    adapted = [name for name, m in model.named_modules() if isinstance(m, LoraLayer)]
    assert len(adapted) == n and not any("other_blocks" in name for name in adapted)
    shortened = model.peft_config["default"].target_modules
    assert "query" not in shortened and len(shortened) == n
    assert all(name.startswith("blocks.") for name in shortened)


def test_a_short_list_is_kept_as_written() -> None:
    model = get_peft_model(_Outer(2), LoraConfig(target_modules=["blocks.0.query", "blocks.1.query"]))
    assert model.peft_config["default"].target_modules == ["blocks.0.query", "blocks.1.query"]
