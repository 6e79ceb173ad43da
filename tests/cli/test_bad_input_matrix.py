"""Bad input, as a table: every case is one line on stderr, exit 1 or 2, no traceback, nothing written.

To add a case, add one ``Case`` to ``REGISTRY_CASES`` (it then runs against a registry holding
``x:1`` and ``x:2`` on SQLite and on PostgreSQL) or to ``HOME_CASES`` (a fresh, empty home: for
options checked before any database is touched, such as ``train``'s). ``argv`` may use
``{tmp}`` (the test's own folder), ``{file}`` (a plain file in it), ``{base}`` (a tiny base
model folder) and ``{adapter}`` (a valid LoRA folder), and so may ``message``. ``setup``
prepares anything else, and may return a function that undoes what it did to a shared database.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import pytest
from click.testing import CliRunner

from adapterlab.cli.main import cli
from adapterlab.registry import list_versions, register_adapter, show
from adapterlab.registry.api import forget_registries
from adapterlab.registry.db.database import SCHEMA_REVISION, create_registry_engine


@dataclass(frozen=True)
class World:
    """What a case's ``setup`` may use."""

    tmp: Path
    home: Path
    base: Path
    adapter: Path
    registry_url: str | None


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]  # the words after `adapters`
    exit_code: int  # 1: our error, 2: a usage error
    message: str  # a piece of the one stderr line
    env: dict[str, str] = field(default_factory=dict)  # extra environment ({tmp}, {file} expanded)
    setup: Callable[[World], Callable[[], None] | None] | None = None


def nested_json(depth: int = 100_000) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


def adapter_copy(world: World, name: str) -> Path:
    folder = world.tmp / name
    shutil.copytree(world.adapter, folder)
    return folder


def nested_adapter_config(world: World) -> None:
    (adapter_copy(world, "nested-config") / "adapter_config.json").write_text(nested_json())


def nested_safetensors_header(world: World) -> None:
    header = ("[" * 100_000 + "]" * 100_000).encode()
    (adapter_copy(world, "nested-header") / "adapter_model.safetensors").write_bytes(
        struct.pack("<Q", len(header)) + header
    )


def invalid_regex_targets(world: World) -> None:
    config_file = adapter_copy(world, "bad-regex") / "adapter_config.json"
    config = json.loads(config_file.read_text())
    config["target_modules"] = "(unclosed"
    config_file.write_text(json.dumps(config))


def other_base(world: World) -> None:
    """A model folder whose weights are not the registered base's."""
    import numpy as np
    from safetensors.numpy import save_file

    (world.tmp / "other-base").mkdir()
    save_file(
        {"weight": np.ones((2, 2), dtype=np.float32)}, str(world.tmp / "other-base" / "model.safetensors")
    )


OFFLINE_HUB = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_CACHE": "{tmp}/no-hf-cache"}


def seq2seq_task(world: World) -> None:
    config_file = adapter_copy(world, "seq2seq") / "adapter_config.json"
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), "task_type": "SEQ_2_SEQ_LM"}))


def causal_task(world: World) -> None:
    config_file = adapter_copy(world, "causal") / "adapter_config.json"
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), "task_type": "CAUSAL_LM"}))


def wider_lora(world: World) -> None:
    """The adapter's B matrices made 48 rows tall: an update for a wider model than the base."""
    import numpy as np
    from safetensors.numpy import load_file, save_file

    weights = adapter_copy(world, "wider") / "adapter_model.safetensors"
    tensors = load_file(weights)
    save_file(
        {
            key: np.zeros((48, *value.shape[1:]), value.dtype) if "lora_B" in key else value
            for key, value in tensors.items()
        },
        weights,
    )


def same_files_other_base(world: World) -> None:
    """x:1's own files beside a copy of the base with other weights."""
    from adapterlab.registry import pull

    pull("x:1", world.tmp / "x1", world.registry_url)
    other = world.tmp / "other-bert"
    shutil.copytree(world.base, other)
    weights = other / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-4:] = bytes(4)  # the last float of the last tensor: other weights, the same shapes
    weights.write_bytes(bytes(data))


def remove_artifact(world: World) -> None:
    uri = show("x:1", world.registry_url).artifact_uri
    shutil.rmtree(url2pathname(urlparse(uri).path))


def future_schema(world: World) -> Callable[[], None]:
    """Stamp the database as migrated by a newer adapterlab (undone afterwards: PostgreSQL's schema is
    shared)."""
    from sqlalchemy import text

    def stamp(revision: str) -> None:
        engine = create_registry_engine(world.registry_url)
        with engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
        engine.dispose()
        forget_registries()

    stamp("0099_from_the_future")
    return lambda: stamp(SCHEMA_REVISION)


def mlflow_behind_auth(world: World) -> Callable[[], None]:
    """MLFLOW_TRACKING_URI at a stand-in for MLflow's basic-auth app that knows no account: /health is
    open, every other call is answered 401."""

    class Refusing(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/health" else 401)
            self.end_headers()

        do_POST = do_DELETE = do_GET

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = f"http://127.0.0.1:{server.server_address[1]}"

    def undo() -> None:
        server.shutdown()
        server.server_close()
        os.environ.pop("MLFLOW_TRACKING_URI")
        if previous is not None:
            os.environ["MLFLOW_TRACKING_URI"] = previous

    return undo


# a teammate whose password MLflow does not know ("secret": the matrix checks it is never printed)
WRONG_MLFLOW_PASSWORD = {
    "ADAPTERLAB_MLFLOW_MIRROR": "1",
    "MLFLOW_TRACKING_USERNAME": "alice",
    "MLFLOW_TRACKING_PASSWORD": "secret-not-alices",
}
REFUSED_BY_MLFLOW = (
    "refused user 'alice' (HTTP 401): set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
)

REGISTRY_CASES = [
    Case(
        "version beyond any integer",
        ("show", "x:99999999999999999999"),
        1,
        "use a whole number from 1 to 2147483647",
    ),
    Case("version in unicode digits", ("show", "x:²"), 1, "invalid version '²'"),
    Case("version zero", ("show", "x:0"), 1, "invalid version '0'"),
    Case(
        "promote a huge version",
        ("promote", "x:99999999999999999999", "--alias", "production"),
        1,
        "use a whole number from 1 to",
    ),
    Case("diff a huge version", ("diff", "x:1", "x:9223372036854775808"), 1, "use a whole number from 1 to"),
    Case(
        "list --limit huge",
        ("list", "--limit", "99999999999999999999"),
        2,
        "is not in the range 1<=x<=2147483647",
    ),
    Case("list --limit zero", ("list", "--limit", "0"), 2, "is not in the range"),
    Case("sync --from-mlflow, mirror off", ("sync", "--from-mlflow"), 1, "the MLflow mirror is off"),
    Case(
        "sync --from-mlflow, MLflow down",
        ("sync", "--from-mlflow"),
        1,
        "does not answer; nothing was changed",
        env={"ADAPTERLAB_MLFLOW_MIRROR": "1", "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"},
    ),
    Case("pull --to under a file", ("pull", "x:1", "--to", "{file}/out"), 1, "lies under the file"),
    Case("export --to under a file", ("export", "x:1", "--to", "{file}/out"), 1, "lies under the file"),
    Case("pull --to a file", ("pull", "x:1", "--to", "{file}"), 1, "is a file; choose a folder path"),
    Case(
        "diff --plot into a missing folder",
        ("diff", "x:1", "x:2", "--plot", "{tmp}/missing/deltas.png"),
        1,
        "does not exist; create it first",
    ),
    Case("diff --plot under a file", ("diff", "x:1", "x:2", "--plot", "{file}/deltas.png"), 1, "is a file"),
    Case(
        "diff --plot in no image format",
        ("diff", "x:1", "x:2", "--plot", "{tmp}/deltas.txt"),
        1,
        "must end in .png, .svg, .pdf",
    ),
    Case("missing artifact", ("pull", "x:1", "--to", "{tmp}/out"), 1, "are missing", setup=remove_artifact),
    Case(
        "deeply nested adapter_config.json",
        ("register", "{tmp}/nested-config", "--name", "n", "--base", "{base}"),
        1,
        "is not valid JSON",
        setup=nested_adapter_config,
    ),
    Case(
        "deeply nested safetensors header",
        ("register", "{tmp}/nested-header", "--name", "n", "--base", "{base}"),
        1,
        "unreadable header",
        setup=nested_safetensors_header,
    ),
    Case(
        "invalid target_modules regex",
        ("register", "{tmp}/bad-regex", "--name", "n", "--base", "{base}"),
        1,
        "is not a valid regex",
        setup=invalid_regex_targets,
    ),
    Case(
        "seq2seq adapter on an encoder-only base",
        ("register", "{tmp}/seq2seq", "--name", "n", "--base", "{base}"),
        1,
        "does not fit base tiny-bert: task SEQ_2_SEQ_LM needs an encoder-decoder model, and 'bert' is not "
        "one",
        setup=seq2seq_task,
    ),
    Case(
        "causal LM adapter on an encoder-only base",
        ("register", "{tmp}/causal", "--name", "n", "--base", "{base}"),
        1,
        "does not fit base tiny-bert: task CAUSAL_LM needs a model that generates text, and 'bert' is an "
        "encoder-only model (its config.json does not set is_decoder)",
        setup=causal_task,
    ),
    Case(
        "adapter for a wider base",
        ("register", "{tmp}/wider", "--name", "n", "--base", "{base}"),
        1,
        "module 'encoder.layer.0.attention.self.query' has weight [32, 32] in the base, but the adapter's "
        "lora_A.weight [4, 32] and lora_B.weight [48, 4] make an update of [48, 32]",
        setup=wider_lora,
    ),
    Case(
        "same files with another base",
        ("register", "{tmp}/x1", "--name", "x", "--base", "{tmp}/other-bert"),
        1,
        "adapter x belongs to base tiny-bert",
        setup=same_files_other_base,
    ),
    Case(
        "db upgrade on an unknown revision",
        ("db", "upgrade"),
        1,
        "'0099_from_the_future', which this adapterlab does not know",
        setup=future_schema,
    ),
    Case(
        "any command on an unknown revision",
        ("list",),
        1,
        "upgrade adapterlab (pip install -U adapterlab)",
        setup=future_schema,
    ),
    Case(
        "db upgrade to an unknown revision",
        ("db", "upgrade", "--revision", "nonsense"),
        1,
        "cannot migrate to revision 'nonsense'",
    ),
    Case(
        "export --merged --base a missing folder",
        ("export", "x:1", "--to", "{tmp}/out", "--merged", "--base", "{tmp}/no-such-base"),
        1,
        "x:1: --base {tmp}/no-such-base is no folder and no Hub id",
    ),
    Case(
        "export --merged --base an unknown Hub id, offline",
        ("export", "x:1", "--to", "{tmp}/out", "--merged", "--base", "nobody/no-such-model"),
        1,
        "is not in the Hugging Face cache, and the Hub is not reachable",
        env=OFFLINE_HUB,
    ),
    Case(
        "export --merged --base other weights",
        ("export", "x:1", "--to", "{tmp}/out", "--merged", "--base", "{tmp}/other-base"),
        1,
        "holds other weights",
        setup=other_base,
    ),
    Case(
        "export --base without --merged",
        ("export", "x:1", "--to", "{tmp}/out", "--base", "{base}"),
        1,
        "--base is only used with --merged",
    ),
    Case(
        "base add-location of an unknown base",
        ("base", "add-location", "no-such-base", "{base}"),
        1,
        "no base model 'no-such-base'",
    ),
    Case(
        "base add-location with other weights",
        ("base", "add-location", "tiny-bert", "{tmp}/other-base"),
        1,
        "holds other weights",
        setup=other_base,
    ),
    Case(
        "base add-location of a file", ("base", "add-location", "tiny-bert", "{file}"), 1, "is not a folder"
    ),
    *(
        Case(
            f"{argv[0]}, wrong MLflow password",
            argv,
            1,
            REFUSED_BY_MLFLOW,
            env=WRONG_MLFLOW_PASSWORD,
            setup=mlflow_behind_auth,
        )
        for argv in (
            ("register", "{adapter}", "--name", "x", "--base", "{base}"),
            ("promote", "x:1", "--alias", "production"),
            ("demote", "x", "--alias", "production"),
            ("sync",),
        )
    ),
]

HOME_CASES = [
    Case(
        "mssql registry",
        ("list",),
        1,
        "unsupported registry database 'mssql'",
        env={"ADAPTERLAB_REGISTRY_URL": "mssql+pyodbc://user:secret@db/registry"},
    ),
    Case(
        "unknown dialect",
        ("list",),
        1,
        "unsupported registry database 'foo'",
        env={"ADAPTERLAB_REGISTRY_URL": "foo://"},
    ),
    Case(
        "mysql registry",
        ("list",),
        1,
        "unsupported registry database 'mysql'",
        env={"ADAPTERLAB_REGISTRY_URL": "mysql://user@127.0.0.1:9/registry"},
    ),
    Case(
        "driver not installed",
        ("list",),
        1,
        "No module named 'asyncpg'",
        env={"ADAPTERLAB_REGISTRY_URL": "postgresql+asyncpg://user@127.0.0.1:9/registry"},
    ),
    Case(
        "home is a file", ("list",), 1, "is a file; choose a folder path", env={"ADAPTERLAB_HOME": "{file}"}
    ),
    Case("home under a file", ("list",), 1, "lies under the file", env={"ADAPTERLAB_HOME": "{file}/home"}),
    Case(
        "sqlite registry under a file",
        ("list",),
        1,
        "is a file; choose a folder path",
        env={"ADAPTERLAB_REGISTRY_URL": "sqlite:///{file}/registry.db"},
    ),
    Case(
        "train --output under a file",
        ("train", "--output", "{file}/run"),
        1,
        "--output {tmp}/plain-file/run lies under",
    ),
    Case("train --lr nan", ("train", "--lr", "nan"), 1, "lr must be a finite number"),
    Case("train --lr inf", ("train", "--lr", "inf"), 1, "lr must be a finite number"),
    Case("train --lr negative", ("train", "--lr=-0.1"), 1, "lr must be a finite number"),
    Case("train --epochs negative", ("train", "--epochs=-1"), 1, "epochs must be a finite number"),
    Case("train --epochs inf", ("train", "--epochs", "inf"), 1, "epochs must be a finite number"),
    Case(
        "train --batch-size 0", ("train", "--batch-size", "0"), 1, "batch_size must be a whole number from 1"
    ),
    Case(
        "train --max-steps huge",
        ("train", "--max-steps", "99999999999999999999"),
        1,
        "max_steps must be a whole number",
    ),
    Case("train --seed negative", ("train", "--seed=-1"), 1, "seed must be a whole number from 0"),
    Case(
        "train --warmup-ratio 1",
        ("train", "--warmup-ratio", "1"),
        1,
        "warmup_ratio must be a finite number in [0, 1)",
    ),
    Case(
        "train --eval-split 0",
        ("train", "--eval-split", "0"),
        1,
        "eval_split must be a finite number in (0, 1)",
    ),
    Case(
        "train --weight-decay negative",
        ("train", "--weight-decay=-1"),
        1,
        "weight_decay must be a finite number",
    ),
    Case(
        "train --max-grad-norm nan",
        ("train", "--max-grad-norm", "nan"),
        1,
        "max_grad_norm must be a finite number",
    ),
    Case("train --name with a space", ("train", "--name", "bad name"), 1, "invalid adapter name 'bad name'"),
    Case(
        "train --name with dot-dot", ("train", "--name", "../escape"), 1, "invalid adapter name '../escape'"
    ),
    Case("train --batch-size text", ("train", "--batch-size", "x"), 2, "'x' is not a valid integer"),
    Case(
        "train --task unknown",
        ("train", "--task", "summarise"),
        1,
        "unknown task 'summarise'; choose one of: SEQ_CLS, TOKEN_CLS, SEQ_2_SEQ_LM, CAUSAL_LM",
    ),
    Case(
        "train --method unknown",
        ("train", "--method", "ia3"),
        1,
        "unknown method 'ia3'; choose one of: LORA, PROMPT_TUNING, P_TUNING, PREFIX_TUNING",
    ),
    Case(
        "train method that cannot train the task",
        ("train", "--method", "prompt-tuning", "--task", "token-cls"),
        1,
        "method PROMPT_TUNING cannot train task TOKEN_CLS",
    ),
    Case(
        "train --lora-dropout 1.5", ("train", "--peft.lora_dropout=1.5"), 1, "lora_dropout must be in [0, 1)"
    ),
    Case(
        "train --lora-alpha nan", ("train", "--peft.lora_alpha=.nan"), 1, "lora_alpha must be a finite number"
    ),
    Case("train --peft.r huge", ("train", "--peft.r=80000000"), 1, "--peft.r=80000000 is larger than 65536"),
    Case(
        "train invalid target_modules regex",
        ("train", "--peft.target_modules=(unclosed"),
        1,
        "is not a valid regex",
    ),
    Case(
        "train config with a text lr",
        ("train", "{tmp}/text-lr.yaml"),
        1,
        "lr must be a number, got 'fast'",
        setup=lambda world: (world.tmp / "text-lr.yaml").write_text("lr: fast\n") and None,
    ),
    Case(
        "train deeply nested config",
        ("train", "{tmp}/deep.yaml"),
        1,
        "is not valid YAML",
        setup=lambda world: (
            (world.tmp / "deep.yaml").write_text("peft: " + "[" * 50_000 + "]" * 50_000) and None
        ),
    ),
]


def expand(text: str, world: World) -> str:
    return text.format(tmp=world.tmp, file=world.tmp / "plain-file", base=world.base, adapter=world.adapter)


def snapshot(*folders: Path) -> set[str]:
    """Every file and folder under ``folders`` (SQLite's own WAL/lock side files aside)."""
    found = set()
    for folder in folders:
        if folder.exists():
            found |= {
                str(path) for path in folder.rglob("*") if not path.name.endswith(("-wal", "-shm", ".lock"))
            }
    return found


def run_case(case: Case, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    (world.tmp / "plain-file").write_text("not a folder")
    undo = case.setup(world) if case.setup else None
    try:
        for key, value in case.env.items():
            monkeypatch.setenv(key, expand(value, world))
        before = snapshot(world.tmp, world.home)
        result = CliRunner().invoke(cli, [expand(word, world) for word in case.argv])
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
        assert result.exit_code == case.exit_code, (result.exit_code, result.stderr, result.stdout)
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
        assert expand(case.message, world) in lines[0], lines[0]
        assert "Traceback" not in result.output and "secret" not in result.output
        assert snapshot(world.tmp, world.home) == before  # nothing written, nothing half-made
    finally:
        for key in case.env:
            monkeypatch.delenv(key, raising=False)
        if undo is not None:
            undo()


@pytest.fixture
def two_versions(registry_env: str, tiny_base: Path, make_lora, monkeypatch: pytest.MonkeyPatch) -> World:
    monkeypatch.setenv("ADAPTERLAB_MLFLOW_MIRROR", "0")
    adapter = make_lora(seed=7)
    register_adapter(make_lora(seed=1), name="x", base=tiny_base)
    register_adapter(make_lora(seed=2), name="x", base=tiny_base)
    work = adapter.parent.parent / "case"
    work.mkdir()
    return World(
        tmp=work,
        home=Path(os.environ["ADAPTERLAB_HOME"]),
        base=tiny_base,
        adapter=adapter,
        registry_url=registry_env,
    )


@pytest.mark.parametrize("case", REGISTRY_CASES, ids=[case.id for case in REGISTRY_CASES])
def test_registry_bad_input(case: Case, two_versions: World, monkeypatch: pytest.MonkeyPatch) -> None:
    versions = list_versions()
    run_case(case, two_versions, monkeypatch)
    forget_registries()
    assert list_versions() == versions


@pytest.fixture
def empty_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_base: Path) -> Iterator[World]:
    """A fresh home; training would load nothing heavy before these checks, and must not get that far."""
    import adapterlab.training.pipeline as pipeline

    home = tmp_path / "home"
    monkeypatch.setenv("ADAPTERLAB_HOME", str(home))
    for name in ("ADAPTERLAB_REGISTRY_URL", "MLFLOW_TRACKING_URI", "ADAPTERLAB_ARTIFACT_ROOT"):
        monkeypatch.delenv(name, raising=False)

    def too_far(*_args, **_kwargs):
        raise AssertionError("bad input reached the data, the tracking store or the model")

    for stage in ("load_training_data", "open_tracking", "build_parts"):
        monkeypatch.setattr(pipeline, stage, too_far)
    work = tmp_path / "case"
    work.mkdir()
    yield World(tmp=work, home=home, base=tiny_base, adapter=tiny_base, registry_url=None)
    assert not home.exists()  # no run folder, no database, no MLflow store
    forget_registries()


@pytest.mark.parametrize("case", HOME_CASES, ids=[case.id for case in HOME_CASES])
def test_bad_input_before_any_database(
    case: Case, empty_home: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_case(case, empty_home, monkeypatch)
