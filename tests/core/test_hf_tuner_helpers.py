"""HF PEFT's tuner helpers that scripts call directly: BaseTuner.get_model_config."""

from __future__ import annotations

import dataclasses

from torch import nn

from adapterlab.tuners.tuners_utils import BaseTuner
from adapterlab.utils import DUMMY_MODEL_CONFIG


class _ToDict:
    def to_dict(self) -> dict:
        return {"model_type": "bert", "hidden_size": 4}


@dataclasses.dataclass
class _Dataclass:
    model_type: str = "gpt2"


def _with_config(config: object) -> nn.Module:
    model = nn.Linear(2, 2)
    model.config = config
    return model


def test_get_model_config_reads_every_kind_of_config() -> None:
    assert BaseTuner.get_model_config(_with_config(_ToDict())) == {"model_type": "bert", "hidden_size": 4}
    assert BaseTuner.get_model_config(_with_config(_Dataclass())) == {"model_type": "gpt2"}
    assert BaseTuner.get_model_config(_with_config({"model_type": "t5"})) == {"model_type": "t5"}
    no_config = BaseTuner.get_model_config(nn.Linear(2, 2))
    assert no_config == DUMMY_MODEL_CONFIG == {"model_type": "custom"}
    no_config["model_type"] = "changed"  # a copy: the shared default stays as it is
    assert DUMMY_MODEL_CONFIG == {"model_type": "custom"}
