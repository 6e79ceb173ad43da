"""Which of HF PEFT's tests the suite runs: those whose id names no method but LoRA and the prompt methods.

HF's test matrices are parametrized by method (``...-LoraConfig-...``, ``TestAdaLora...``), so a
test is left out when its id names another method. Kept apart from the plugin so that the cached
baseline depends on the selection, not on the alias.
"""

from __future__ import annotations

import re

# HF PEFT's other methods as they appear in test ids: CamelCase (a word of a class or config
# name) and snake_case (a word of a function name or parameter id)
_CAMEL = (
    "AdaLora",
    "Adamss",
    "Beft",
    "Deft",
    "Frod",
    "Glora",
    "Peanut",
    "Psoft",
    "Supertuning",
    "AdaptionPrompt",
    "Arrow",
    "BOFT",
    "Boft",
    "Bone",
    "C3A",
    "Cartridge",
    "Corda",
    "CorDA",
    "CPT",
    "DeLoRA",
    "Delora",
    "EvaConfig",
    "FourierFT",
    "Gralora",
    "GraLoRA",
    "Hira",
    "HiRA",
    "HRA",
    "IA3",
    "Lily",
    "LNTuning",
    "LoHa",
    "LoKr",
    "LoraGA",
    "LoraFA",
    "MiSS",
    "Miss",
    "Monteclora",
    "MultitaskPromptTuning",
    "OFT",
    "OSF",
    "Poly",
    "Pvera",
    "PVeRA",
    "RandLora",
    "Road",
    "RoAd",
    "Shira",
    "SHiRA",
    "TinyLora",
    "TrainableTokens",
    "UniLora",
    "VBLoRA",
    "VeRA",
    "Vera",
    "WaveFT",
    "XLora",
)
_SNAKE = (
    "adalora",
    "adamss",
    "beft",
    "deft",
    "frod",
    "glora",
    "peanut",
    "psoft",
    "supertuning",
    "adaption_prompt",
    "arrow",
    "boft",
    "bone",
    "c3a",
    "cartridge",
    "corda",
    "cpt",
    "delora",
    "eva",
    "fourierft",
    "gralora",
    "hira",
    "hra",
    "ia3",
    "lily",
    "ln_tuning",
    "loha",
    "lokr",
    "loraga",
    "lora_ga",
    "lorafa",
    "miss",
    "monteclora",
    "multitask",
    "oft",
    "osf",
    "poly",
    "pvera",
    "randlora",
    "road",
    "shira",
    "tinylora",
    "trainable_tokens",
    "unilora",
    "vblora",
    "vera",
    "waveft",
    "xlora",
)
OTHER_METHOD_IN_ID = re.compile(
    rf"(?:(?<![A-Za-z])|(?<=[a-z]))(?:{'|'.join(_CAMEL)})(?![a-z])|(?<![A-Za-z])(?:{'|'.join(_SNAKE)})(?![a-z])"
)


def names_other_method(nodeid: str) -> bool:
    """True when the test id (without its file name) names a method other than LoRA and the prompt methods."""
    # the file name is left out: test_trainable_tokens.py also tests LoRA's trainable_token_indices
    return OTHER_METHOD_IN_ID.search(nodeid.partition("::")[2]) is not None
