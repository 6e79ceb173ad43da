"""The transformers Trainer runs HF PEFT's tutorial unchanged on adapterlab models.

examples/trainer_tutorial.py (the tutorial with only the import changed) trains the real MiniLM with
default TrainingArguments; its checkpoints hold the adapter only; resuming continues from the saved
step with the saved adapter; the best checkpoint comes back at the end. Seq2SeqTrainer generates.
The integration works without HF ``peft`` installed and whichever of transformers' Trainer and
adapterlab is imported first.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from core_bases import VOCAB, bert_config, t5_config
from models import minilm_dir
from safetensors.torch import load_file
from transformers import (
    BertForSequenceClassification,
    EvalPrediction,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
    T5ForConditionalGeneration,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from adapterlab import LoraConfig, TaskType, get_peft_model, get_peft_model_state_dict
from adapterlab.errors import InvalidConfig

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "trainer_tutorial.py"
ADAPTER_FILES = {"adapter_config.json", "adapter_model.safetensors"}
FULL_MODEL_FILES = {"model.safetensors", "pytorch_model.bin", "model.safetensors.index.json"}
# one intra-op thread: on a shared CI box, OpenMP threads spinning against other jobs are slower
CHILD_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}


def tutorial() -> ModuleType:
    minilm_dir()  # skips when the real MiniLM is not installed
    spec = importlib.util.spec_from_file_location("trainer_tutorial", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def checkpoints(output_dir: Path) -> list[Path]:
    return sorted(output_dir.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))


def adapter_file(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "adapter_model.safetensors")


def live_adapter(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().cpu().clone() for key, value in get_peft_model_state_dict(model).items()}


def same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = 0.0) -> bool:
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], rtol=0, atol=atol) for k in a)


def assert_adapter_only(folder: Path) -> None:
    names = {path.name for path in folder.iterdir()}
    assert ADAPTER_FILES <= names, names
    assert not names & FULL_MODEL_FILES, names


# -- the tutorial script, end to end --------------------------------------------------------------


def test_tutorial_script_runs_unchanged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # in process (the script's main), to spare a second import of torch and transformers; the
    # fresh-process tests below show the same integration from a clean interpreter
    out = tmp_path / "run"
    tutorial().main(["--output-dir", str(out), "--max-steps", "4"])
    stdout = capsys.readouterr().out

    assert "trainable params: 74,498 || all params: 22,788,484" in stdout
    line = next(line for line in stdout.splitlines() if line.startswith("eval metrics: "))
    metrics = json.loads(line.removeprefix("eval metrics: "))
    assert {"eval_loss", "eval_accuracy"} <= metrics.keys()
    assert 0 <= metrics["eval_accuracy"] <= 1 and metrics["eval_loss"] > 0

    saved = checkpoints(out)
    assert [path.name for path in saved] == ["checkpoint-2", "checkpoint-4"]
    for folder in [*saved, out / "final"]:
        assert_adapter_only(folder)
        # LoRA r=8 on MiniLM + its classifier: ~300 kB (the full model is 89 MB)
        assert (folder / "adapter_model.safetensors").stat().st_size < 1_000_000
        assert sum(path.stat().st_size for path in folder.iterdir()) < 5_000_000
    config = json.loads((out / "final" / "adapter_config.json").read_text())
    assert (config["peft_type"], config["task_type"], config["r"]) == ("LORA", "SEQ_CLS", 8)

    state = json.loads((saved[-1] / "trainer_state.json").read_text())
    best = Path(state["best_model_checkpoint"]).name
    assert same_tensors(adapter_file(out / "final"), adapter_file(out / best))


# -- best model and resume, in process ------------------------------------------------------------


class ScriptedAccuracy:
    """compute_metrics whose first evaluation is the best, so the best checkpoint is not the last."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, eval_pred: EvalPrediction) -> dict[str, float]:
        self.calls += 1
        return {"accuracy": 1.0 if self.calls == 1 else 0.0}


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Trainer, Path]:
    """The tutorial's Trainer, 4 steps (checkpoints at 2 and 4), the evaluation at step 2 the best."""
    out = tmp_path_factory.mktemp("first")
    trainer = tutorial().build_trainer(out, max_steps=4, metrics=ScriptedAccuracy())
    trainer.train()
    return trainer, out


def test_best_model_is_loaded_back_at_the_end(first_run: tuple[Trainer, Path]) -> None:
    trainer, out = first_run
    best, last = checkpoints(out)
    assert Path(trainer.state.best_model_checkpoint) == best
    assert not same_tensors(adapter_file(best), adapter_file(last))  # training moved the adapter
    assert same_tensors(live_adapter(trainer.model), adapter_file(best))
    # loaded in place: the adapter is still the one that trains
    assert all(p.requires_grad for n, p in trainer.model.named_parameters() if "lora_" in n)


class SnapshotAtStart(TrainerCallback):
    def on_train_begin(self, args, state, control, model=None, **kwargs):  # noqa: ANN001, ANN003, ANN201
        self.step = state.global_step
        self.adapter = live_adapter(model)
        self.parameters = {n: p for n, p in model.named_parameters() if p.requires_grad}


def test_resume_continues_from_the_saved_step_with_its_adapter(
    first_run: tuple[Trainer, Path], tmp_path: Path
) -> None:
    _, first_out = first_run
    saved_at_2, saved_at_4 = checkpoints(first_out)
    trainer = tutorial().build_trainer(tmp_path, max_steps=4, metrics=ScriptedAccuracy())
    with torch.no_grad():  # a fresh adapter unlike the saved one: the resume has to load it
        for name, param in trainer.model.named_parameters():
            if "lora_" in name:
                param.normal_(0, 0.5)
    snapshot = SnapshotAtStart()
    trainer.add_callback(snapshot)
    trainer.train(resume_from_checkpoint=str(saved_at_2))

    assert snapshot.step == 2 and trainer.state.global_step == 4
    assert same_tensors(snapshot.adapter, adapter_file(saved_at_2))
    # loaded in place: the optimizer restored from the checkpoint holds these very parameters
    optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert {id(p) for p in snapshot.parameters.values()} <= optimized
    # steps 3 and 4 redone from the checkpoint (optimizer, scheduler, data order, RNG) end where the
    # uninterrupted run did
    assert_adapter_only(tmp_path / "checkpoint-4")
    assert same_tensors(adapter_file(tmp_path / "checkpoint-4"), adapter_file(saved_at_4), atol=1e-5)


# -- Seq2SeqTrainer with generation ------------------------------------------------------------------


def copy_task(rows: int, seed: int) -> list[dict[str, list[int]]]:
    generator = np.random.default_rng(seed)
    ids = generator.integers(2, VOCAB, size=(rows, 6)).tolist()
    return [{"input_ids": row, "attention_mask": [1] * 6, "labels": row} for row in ids]


def test_seq2seq_trainer_predicts_with_generate_and_saves_adapters(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = get_peft_model(
        T5ForConditionalGeneration(t5_config()),
        LoraConfig(task_type=TaskType.SEQ_2_SEQ_LM, r=4, lora_alpha=8),
    )
    eval_rows = copy_task(4, 1)
    seen: list[np.ndarray] = []

    def metrics(eval_pred: EvalPrediction) -> dict[str, float]:
        seen.append(eval_pred.predictions)
        generated = eval_pred.predictions[:, 1:7]  # after the decoder start token
        return {"token_match": float((generated == eval_pred.label_ids[:, :6]).mean())}

    args = Seq2SeqTrainingArguments(
        output_dir=str(tmp_path),
        max_steps=4,
        per_device_train_batch_size=4,
        learning_rate=1e-2,
        eval_strategy="steps",
        eval_steps=2,
        save_steps=2,
        predict_with_generate=True,
        generation_max_length=8,
        report_to="none",
        use_cpu=True,
    )
    trainer = Seq2SeqTrainer(
        model=model,
        args=args,
        train_dataset=copy_task(16, 0),
        eval_dataset=eval_rows,
        compute_metrics=metrics,
    )
    trainer.train()
    result = trainer.evaluate()

    assert "eval_token_match" in result and "eval_loss" in result
    assert len(seen) == 3  # steps 2 and 4, then evaluate()
    # the predictions are what the adapted model generates (at most generation_max_length tokens,
    # padded by the Trainer), not logits
    model.eval()
    inputs = torch.tensor([row["input_ids"] for row in eval_rows])
    expected = model.generate(input_ids=inputs, attention_mask=torch.ones_like(inputs), max_length=8).numpy()
    assert np.issubdtype(seen[-1].dtype, np.integer) and expected.shape[1] <= 8
    assert np.array_equal(seen[-1][:, : expected.shape[1]], expected)
    assert (seen[-1][:, expected.shape[1] :] == 0).all()  # the pad token
    for folder in checkpoints(tmp_path):
        assert_adapter_only(folder)
        config = json.loads((folder / "adapter_config.json").read_text())
        assert config["task_type"] == "SEQ_2_SEQ_LM"
    assert same_tensors(live_adapter(model), adapter_file(checkpoints(tmp_path)[-1]))


# -- the integration's edges ----------------------------------------------------------------------------


def tiny_bert_trainer(output_dir: Path, model: torch.nn.Module) -> Trainer:
    args = TrainingArguments(output_dir=str(output_dir), report_to="none", use_cpu=True)
    return Trainer(model=model, args=args)


def tiny_bert() -> BertForSequenceClassification:
    torch.manual_seed(0)
    return BertForSequenceClassification(bert_config(num_labels=2))


def test_other_models_keep_transformers_own_saving(tmp_path: Path) -> None:
    tiny_bert_trainer(tmp_path, tiny_bert()).save_model(str(tmp_path / "plain"))
    assert (tmp_path / "plain" / "model.safetensors").is_file()


def test_a_state_dict_handed_to_save_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    model = get_peft_model(tiny_bert(), LoraConfig(task_type=TaskType.SEQ_CLS, r=4))
    trainer = tiny_bert_trainer(tmp_path, model)
    with pytest.raises(InvalidConfig, match="handed a state_dict"):
        trainer._save(str(tmp_path / "gathered"), state_dict=model.state_dict())
    assert not (tmp_path / "gathered").exists()


def test_resuming_from_a_folder_without_an_adapter_says_so(tmp_path: Path) -> None:
    from adapterlab.errors import CheckpointError

    model = get_peft_model(tiny_bert(), LoraConfig(task_type=TaskType.SEQ_CLS, r=4))
    before = live_adapter(model)
    (tmp_path / "full-model").mkdir()
    trainer = tiny_bert_trainer(tmp_path, model)
    trainer.train_dataset = [{"input_ids": [2, 3, 4], "labels": 1}] * 4
    with pytest.raises(CheckpointError, match="no adapter_model.safetensors") as excinfo:
        trainer.train(resume_from_checkpoint=str(tmp_path / "full-model"))
    assert "\n" not in str(excinfo.value)
    assert same_tensors(live_adapter(model), before)
    with pytest.raises(CheckpointError, match="no checkpoint folder"):
        trainer._load_from_checkpoint(str(tmp_path / "missing"))

    # a checkpoint that lacks one of the model's adapters changes none of them
    model.add_adapter("other", LoraConfig(task_type=TaskType.SEQ_CLS, r=2))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B.default" in name:
                param.add_(1.0)
    model.save_pretrained(tmp_path / "default-only", selected_adapters=["default"])
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B.default" in name:
                param.zero_()
    with pytest.raises(CheckpointError, match="other"):
        trainer._load_from_checkpoint(str(tmp_path / "default-only"))
    assert same_tensors(live_adapter(model), before)


# The child trains a tiny BERT for 2 steps (evaluating and saving each), resumes, and reports.
CHILD = textwrap.dedent("""
    import json, sys
    if "--without-peft" in sys.argv:
        sys.modules["peft"] = None  # HF peft not importable: transformers' is_peft_available() is False
    if "--trainer-first" in sys.argv:
        import transformers.trainer
    import adapterlab
    report = {"trainer_imported_with_adapterlab": "transformers.trainer" in sys.modules}
    import torch
    import transformers.trainer
    from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments
    from transformers.utils import is_peft_available
    from adapterlab import LoraConfig, TaskType, get_peft_model

    torch.manual_seed(0)
    config = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=37, max_position_embeddings=32, num_labels=2)
    model = get_peft_model(BertForSequenceClassification(config), LoraConfig(task_type=TaskType.SEQ_CLS, r=4))
    rows = [{"input_ids": [i % 60 + 2] * 6, "attention_mask": [1] * 6, "token_type_ids": [0] * 6,
             "label": i % 2, "text": "unused"} for i in range(8)]
    args = TrainingArguments(sys.argv[1], max_steps=2, per_device_train_batch_size=4, eval_strategy="steps",
                             eval_steps=1, save_steps=1, load_best_model_at_end=True, report_to="none",
                             use_cpu=True)
    trainer = Trainer(model=model, args=args, train_dataset=rows, eval_dataset=rows)
    trainer.train()
    trainer.train(resume_from_checkpoint=sys.argv[1] + "/checkpoint-1")
    report.update(peft_available=is_peft_available(), label_names=trainer.label_names,
                  steps=trainer.state.global_step, eval_loss=trainer.evaluate()["eval_loss"],
                  predicate=transformers.trainer._is_peft_model(model))
    print("REPORT " + json.dumps(report))
""")


@pytest.mark.slow  # a fresh interpreter imports torch and transformers: ~25 s on 2 busy cores
@pytest.mark.parametrize(
    ("flags", "peft_available", "trainer_first"),
    [(["--without-peft"], False, False), (["--trainer-first"], True, True)],
    ids=["without-hf-peft-adapterlab-first", "with-hf-peft-trainer-first"],
)
def test_the_trainer_learns_about_adapterlab_in_a_fresh_process(
    tmp_path: Path, flags: list[str], peft_available: bool, trainer_first: bool
) -> None:
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(out), *flags],
        cwd=tmp_path,
        env=CHILD_ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("REPORT "))
    report = json.loads(line.removeprefix("REPORT "))
    assert report["trainer_imported_with_adapterlab"] is trainer_first  # adapterlab alone imports no Trainer
    assert report["peft_available"] is peft_available
    assert report["predicate"] is True
    assert report["label_names"] == ["labels"] and report["steps"] == 2 and report["eval_loss"] > 0
    for folder in checkpoints(out):
        assert_adapter_only(folder)


# -- forward's signature --------------------------------------------------------------------------------


@pytest.mark.parametrize("factory", ["bert", "t5"])
def test_forward_shows_the_base_models_parameters(factory: str) -> None:
    import inspect

    base = tiny_bert() if factory == "bert" else T5ForConditionalGeneration(t5_config())
    task = TaskType.SEQ_CLS if factory == "bert" else TaskType.SEQ_2_SEQ_LM
    model = get_peft_model(base, LoraConfig(task_type=task, r=4)).eval()
    shown = inspect.signature(model.forward).parameters
    expected = [name for name in inspect.signature(type(base).forward).parameters if name != "self"]
    assert [name for name in shown if name != "adapter_names"] == expected
    assert shown["adapter_names"].kind is inspect.Parameter.KEYWORD_ONLY
    assert "labels" in shown and ("token_type_ids" in shown) is (factory == "bert")

    inputs = {"input_ids": torch.randint(2, VOCAB, (2, 6))}
    if factory == "t5":
        inputs["decoder_input_ids"] = torch.randint(2, VOCAB, (2, 3))
    torch.testing.assert_close(
        model.forward(**inputs).logits, model(**inputs, adapter_names=["default"] * 2).logits
    )
    twin = copy.deepcopy(model)  # the copy's forward runs the copy
    with torch.no_grad():
        next(p for n, p in twin.named_parameters() if "lora_B" in n).add_(1.0)
    assert not torch.allclose(twin(**inputs).logits, model(**inputs).logits)


@pytest.mark.parametrize(
    ("task_class", "labels"),
    [
        ("PeftModelForSequenceClassification", ["labels"]),
        ("PeftModelForCausalLM", ["labels"]),
        ("PeftModelForSeq2SeqLM", ["labels"]),
        ("PeftModelForTokenClassification", ["labels"]),
        ("PeftModelForQuestionAnswering", ["start_positions", "end_positions"]),
        ("PeftModelForFeatureExtraction", []),
        ("PeftModel", []),
    ],
)
def test_each_task_class_shows_its_labels(task_class: str, labels: list[str]) -> None:
    # transformers 4.50 sets the Trainer's label_names from the class's forward, as find_labels does
    from transformers.utils.generic import find_labels

    import adapterlab

    cls = getattr(adapterlab, task_class)
    assert find_labels(cls) == labels
    assert find_labels(type(f"My{task_class}", (cls,), {})) == labels  # a user's subclass too


def test_forward_survives_accelerates_mixed_precision_wrapping() -> None:
    # accelerate wraps forward in autocast (through its __func__) and unwraps it again on request
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    model = get_peft_model(tiny_bert(), LoraConfig(task_type=TaskType.SEQ_CLS, r=4)).eval()
    inputs = torch.randint(2, VOCAB, (2, 6))
    reference = model(input_ids=inputs).logits
    # the process-wide accelerate state a Trainer test left behind fixes mixed_precision: start afresh
    AcceleratorState._reset_state(reset_partial_state=True)
    try:
        accelerator = Accelerator(mixed_precision="bf16", cpu=True)
        prepared = accelerator.prepare(model)
        assert prepared(input_ids=inputs).logits.dtype == torch.float32  # outputs converted back
        unwrapped = accelerator.unwrap_model(prepared, keep_fp32_wrapper=False)
        torch.testing.assert_close(unwrapped(input_ids=inputs).logits, reference)
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
