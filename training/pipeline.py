"""``train(config)``: check everything, train, log to MLflow, register the adapter on success.

Order matters for "bad input fails before anything happens": the config, the data, the base and
the method are checked, then the tracking store and the registry are reached, and only then is
an MLflow run opened and the model trained. In a multi-process launch every process runs this
function; only the main process talks to MLflow and the registry, and it shares the outcome of
its checks so that all processes fail (or go on) together.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import shutil
import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapterlab.errors import (
    InvalidConfig,
    RegistryUnavailable,
    TrainingError,
    TrainingInterrupted,
    summarize,
)
from adapterlab.labels import write_labels
from adapterlab.training.checkpointing import latest_checkpoint, read_checkpoint
from adapterlab.training.config import TrainConfig, labelled, resolve, to_yaml
from adapterlab.training.data import TrainingData, load_training_data
from adapterlab.training.loop import LoopHooks, LoopResult, run_loop
from adapterlab.training.model_builder import build_peft_config, check_base, check_method_task
from adapterlab.training.parts import build_parts, make_accelerator
from adapterlab.training.run_folders import holds_run
from adapterlab.training.tracking import redact


@dataclass(frozen=True)
class TrainResult:
    name: str  # adapter name
    task: str  # PEFT's name, as adapter_config.json and the registry show it (SEQ_CLS)
    method: str  # PEFT's name (LORA)
    version: int | None  # registered version; None with --no-register
    run_id: str  # MLflow run id
    tracking_uri: str
    adapter_path: Path  # the final (best) adapter folder
    metrics: dict[str, float]  # eval metrics of the best checkpoint
    best_step: int | None
    steps: int
    seconds: float
    samples_per_second: float
    train_rows: int
    eval_rows: int
    trainable_parameters: int
    total_parameters: int
    is_main_process: bool  # False in the other processes of a multi-process launch


def train(config: TrainConfig) -> TrainResult:
    """Train an adapter as ``config`` says; see the module docstring for the order of events."""
    config = resolve(config)
    check_method_task(config)
    check_base(config)
    peft_config = build_peft_config(config)
    check_output(config)
    data = load_training_data(config)
    accelerator = make_accelerator(config)
    config = same_output_everywhere(config, accelerator)
    base, tracker = share_outcome(
        accelerator,
        lambda: (
            (describe_base(config), open_tracking(config)) if accelerator.is_main_process else (None, None)
        ),
    )
    parts, counts = build_parts(config, peft_config, data, accelerator)
    accelerator.wait_for_everyone()
    with stop_on_signals() as stop:
        outcome = run_tracked(config, data, parts, accelerator, tracker, base, stop)
    return finish(config, data, accelerator, tracker, base, outcome, counts)


def check_output(config: TrainConfig) -> None:
    from adapterlab.registry.settings import usable_folder

    usable_folder(Path(config.output), "--output")
    if not config.resume:
        if holds_run(Path(config.output)):  # never overwrite an earlier run's files
            raise InvalidConfig(
                f"--output {config.output} already holds a run; pass --resume to continue it, or choose "
                f"another --output (without one, each run gets a new folder under runs/{config.name})"
            )
        return
    found = latest_checkpoint(Path(config.output) / "checkpoints")
    if found is None:
        raise InvalidConfig(
            f"nothing to resume: no checkpoint under {config.output}/checkpoints; drop --resume"
        )
    read_checkpoint(found)  # a corrupt or planted file fails here, before the model is loaded
    resumed_run_id(Path(config.output))


def resumed_run_id(output: Path) -> str | None:
    """The MLflow run a resumed run continues, from ``run.json`` (checked: the folder may be handed over)."""
    run_file = output / "run.json"
    if not run_file.exists():
        return None
    try:
        run_id = json.loads(run_file.read_text()).get("mlflow_run_id")
    except (OSError, ValueError, RecursionError, AttributeError) as exc:
        raise InvalidConfig(
            f"cannot read {run_file} ({type(exc).__name__}); delete it to resume in a new MLflow run"
        ) from exc
    if not isinstance(run_id, str) or not run_id.isascii() or not run_id.isalnum():
        raise InvalidConfig(
            f"{run_file} holds no valid mlflow_run_id; delete it to resume in a new MLflow run"
        )
    return run_id


def same_output_everywhere(config: TrainConfig, accelerator: Any) -> TrainConfig:
    """Every process of a launch writes to the main process's run folder: each chose a new one by
    the clock, and their clocks may fall on both sides of a second."""
    if accelerator.num_processes == 1:
        return config
    from accelerate.utils import broadcast_object_list

    return dataclasses.replace(config, output=broadcast_object_list([config.output])[0])


def describe_base(config: TrainConfig) -> Any:
    """The base's registry name and fingerprint (used for tags and registration)."""
    from adapterlab.registry.base_models import describe_folder

    folder = Path(config.base).expanduser()
    if not folder.is_dir():
        return None  # a Hub id: the registry resolves it by name when registering
    return describe_folder(folder, config.base_name)


def open_tracking(config: TrainConfig) -> Any:
    """Reach MLflow (and the registry when registering) before any training happens."""
    from adapterlab.registry import Registry
    from adapterlab.registry.settings import mlflow_tracking_uri
    from adapterlab.training.tracking import RunTracker, check_tracking_reachable, default_artifact_location

    uri = mlflow_tracking_uri()
    check_tracking_reachable(uri, config.experiment)
    if config.register:
        Registry.open(config.registry_url).close()
    return RunTracker(uri, config.experiment, default_artifact_location(uri))


def share_outcome(accelerator: Any, action: Any) -> Any:
    """Run ``action`` (meaningful on the main process); if it fails there, fail on every process."""
    from accelerate.utils import broadcast_object_list

    result, error = None, None
    try:
        result = action()
    except Exception as exc:  # re-raised below, after the other processes have heard of it
        error = exc
    if accelerator.num_processes > 1:
        shared = broadcast_object_list([str(error) if error else None])
        if shared[0] and error is None:
            raise TrainingError(f"the main process failed its checks: {shared[0]}")
    if error is not None:
        raise error
    return result


@contextmanager
def stop_on_signals():
    """Ctrl-C and SIGTERM ask the loop to stop at the next step boundary (and checkpoint there)."""
    requested = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield requested
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda *_: requested.set())
    try:
        yield requested
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_tracked(
    config: TrainConfig,
    data: TrainingData,
    parts: Any,
    accelerator: Any,
    tracker: Any,
    base: Any,
    stop: threading.Event,
) -> LoopResult:
    """The loop inside an MLflow run; the run ends FAILED on any error."""
    run_file = Path(config.output) / "run.json"
    if tracker is not None:
        resume_id = resumed_run_id(run_file.parent) if config.resume else None
        try:
            tracker.start(new_run_name(config, accelerator, parts), resume_id, run_tags(config, base))
            log_run_inputs(config, data, accelerator, parts, tracker)
        except Exception as exc:  # the store answered the pre-flight check but not now
            if tracker.run_id:
                tracker.end("FAILED")
            raise RegistryUnavailable(
                f"cannot start the MLflow run at {redact(tracker.uri)}: {type(exc).__name__}: "
                f"{summarize(exc)}"
            ) from exc
        run_file.parent.mkdir(parents=True, exist_ok=True)
        run_file.write_text(json.dumps({"mlflow_run_id": tracker.run_id}))
    hooks = LoopHooks(
        log_metrics=tracker.log_metrics if tracker else lambda metrics, step: None,
        on_best=lambda model, metrics: save_adapter(model, Path(config.output) / "best", data.labels),
        stop_requested=stop.is_set,
    )
    try:
        return run_loop(config, parts, accelerator, hooks)
    except BaseException:
        if tracker is not None:
            tracker.end("FAILED")
        raise


def new_run_name(config: TrainConfig, accelerator: Any, parts: Any) -> str:
    from datetime import datetime, timezone

    from adapterlab.training.tracking import run_name

    rank = getattr(accelerator.unwrap_model(parts.model).peft_config["default"], "r", None)
    rank = rank if isinstance(rank, int) and not isinstance(rank, bool) else None  # LoRA-like methods only
    return run_name(config.name, config.method, rank, datetime.now(timezone.utc))


def run_tags(config: TrainConfig, base: Any) -> dict[str, str]:
    tags = {
        "adapterlab.task": config.task,
        "adapterlab.method": config.method,
        "adapterlab.adapter_name": config.name,
        "adapterlab.base_name": base.name if base else config.base,
    }
    if base is not None:
        tags["adapterlab.base_fingerprint"] = base.fingerprint
    return tags


def log_run_inputs(
    config: TrainConfig, data: TrainingData, accelerator: Any, parts: Any, tracker: Any
) -> None:
    from adapterlab.training.tracking import flatten_params

    peft_config = accelerator.unwrap_model(parts.model).peft_config["default"]
    params = flatten_params({key: value for key, value in config.to_dict().items() if key != "peft"})
    params.update(flatten_params(peft_config.to_dict(), "peft."))
    params.update(
        num_processes=str(accelerator.num_processes),
        total_steps=str(parts.total_steps),
        effective_batch_size=str(config.batch_size * config.grad_accum * accelerator.num_processes),
    )
    tracker.log_params(params)
    target = config.label_column if labelled(config.task) else config.target_column
    tracker.log_dataset(data.train, data.source, f"{Path(data.source).name}:train", "training", target)
    tracker.log_dataset(
        data.eval, config.eval_data or data.source, f"{Path(data.source).name}:eval", "evaluation", target
    )


def save_adapter(model: Any, folder: Path, labels: list[str] | None) -> None:
    """Write the adapter (and its label names) to a fresh folder, replacing ``folder`` whole."""
    staging = folder.with_name(folder.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(str(staging))
    if labels is not None:
        write_labels(staging, labels)
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)


def finish(
    config: TrainConfig,
    data: TrainingData,
    accelerator: Any,
    tracker: Any,
    base: Any,
    outcome: LoopResult,
    counts: tuple[int, int],
) -> TrainResult:
    """Close the run as it ended; on success publish the best adapter and register it."""
    output = Path(config.output)
    if outcome.interrupted:
        if tracker is not None:
            tracker.end("KILLED")
        raise TrainingInterrupted(
            f"training stopped at step {outcome.state.global_step}; checkpoint saved in "
            f"{outcome.checkpoint}; nothing was registered. Resume with the same options plus --resume "
            f"(output {output})"
        )
    adapter = output / "adapter"

    def publish_on_main() -> int | None:
        if not accelerator.is_main_process:
            return None
        try:
            version = publish(config, data, tracker, base, outcome, adapter)
        except BaseException:
            tracker.end("FAILED")
            raise
        tracker.end("FINISHED")
        return version

    version = share_outcome(accelerator, publish_on_main)
    return TrainResult(
        name=config.name,
        task=config.task,
        method=config.method,
        version=version,
        run_id=tracker.run_id if tracker else "",
        tracking_uri=tracker.uri if tracker else "",
        adapter_path=adapter,
        metrics=outcome.state.best_metrics or {},
        best_step=outcome.state.best_step,
        steps=outcome.state.global_step,
        seconds=outcome.seconds,
        samples_per_second=outcome.samples_per_second,
        train_rows=len(data.train),
        eval_rows=len(data.eval),
        trainable_parameters=counts[0],
        total_parameters=counts[1],
        is_main_process=accelerator.is_main_process,
    )


def publish(
    config: TrainConfig, data: TrainingData, tracker: Any, base: Any, outcome: LoopResult, adapter: Path
) -> int | None:
    """Copy the best adapter to ``<output>/adapter``, log it as an artifact, register it."""
    best = Path(config.output) / "best"
    if not best.is_dir():
        raise TrainingError(f"no evaluated adapter was saved under {best}")
    shutil.rmtree(adapter, ignore_errors=True)
    shutil.copytree(best, adapter)
    if base is not None:  # a local base: what is logged and registered names it by Hub id or name
        from adapterlab.registry.files.portable_config import write_portable_config

        write_portable_config(adapter, base)
    config_yaml = to_yaml(config)
    (Path(config.output) / "train_config.yaml").write_text(config_yaml)
    if outcome.state.best_step is not None and outcome.state.best_metrics:
        from adapterlab.training.tracking import best_metrics

        tracker.log_metrics(
            best_metrics(outcome.state.best_metrics, outcome.state.best_step), outcome.state.best_step
        )
    if not tracker.lost:
        try:
            tracker.log_artifacts(adapter, config_yaml)
        except Exception as exc:  # the store went away at the very end
            tracker.lost = f"{type(exc).__name__}: {summarize(exc)}"
    if tracker.lost:
        raise TrainingError(
            f"training finished but MLflow stopped answering ({tracker.lost}); the adapter is saved in "
            f"{adapter} and was not registered; once MLflow is back, register it with: "
            f"{register_command(config, base, outcome, adapter, tracker.run_id)}"
        )
    if not config.register:
        return None
    from adapterlab.registry import Registry

    with Registry.open(config.registry_url) as registry:
        registered = registry.register(
            adapter,
            name=config.name,
            base=config.base,
            base_name=base.name if base else config.base_name,
            task_type=config.task,
            metrics=outcome.state.best_metrics,
            tags={"method": config.method, "data": Path(data.source).name},
            description=config.description,
            mlflow_run_id=tracker.run_id,
        )
    return registered.version


def register_command(
    config: TrainConfig, base: Any, outcome: LoopResult, adapter: Path, run_id: str | None
) -> str:
    """The ``adapters register`` line that records this adapter as training would have."""
    words = ["adapters", "register", str(adapter), "--name", config.name, "--base", config.base]
    base_name = base.name if base else config.base_name
    if base_name:
        words += ["--base-name", base_name]
    for key, value in sorted((outcome.state.best_metrics or {}).items()):
        words += ["--metric", f"{key}={value:.6g}"]
    words += ["--tag", f"method={config.method}"]
    if run_id:
        words += ["--run-id", run_id]
    return shlex.join(words)
