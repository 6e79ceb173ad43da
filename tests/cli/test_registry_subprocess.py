"""The ``adapters`` console script as a real process: JSON on stdout, light imports, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from adapterlab.registry import register_adapter

ADAPTERS = str(Path(sys.executable).with_name("adapters"))
HEAVY = ("torch", "transformers", "mlflow", "safetensors")
# runs the CLI in-process, then reports which heavy top-level modules got imported, and whether
# the ORM did (the read-only commands and promote run on SQLAlchemy Core: it costs a fifth of their time)
PROBE = f"""
import json, sys
from adapterlab.cli.main import cli
try:
    cli(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
heavy = sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r}))
heavy += ["sqlalchemy.orm"] if "sqlalchemy.orm" in sys.modules else []
print("HEAVY=" + json.dumps(heavy), file=sys.stderr)
sys.exit(code)
"""


def adapters(*args: str, code: int = 0) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [ADAPTERS, *args], capture_output=True, text=True, env=os.environ.copy(), timeout=300
    )
    assert result.returncode == code, result.stderr
    return result


def heavy_modules_after(*args: str, code: int = 0) -> list[str]:
    result = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == code, result.stderr
    line = next(line for line in result.stderr.splitlines() if line.startswith("HEAVY="))
    return json.loads(line.removeprefix("HEAVY="))


def test_commands_as_subprocesses(registry_env, tiny_base, make_lora, tmp_path: Path) -> None:
    folder = make_lora(seed=1)
    registered = json.loads(
        adapters(
            "register",
            str(folder),
            "--name",
            "sub",
            "--base",
            str(tiny_base),
            "--metric",
            "accuracy=0.9",
            "--json",
        ).stdout
    )
    assert registered["version"] == 1
    assert json.loads(adapters("list", "--json").stdout)[0]["name"] == "sub"
    assert json.loads(adapters("show", "sub@production", code=1).stdout or "null") is None
    promoted = json.loads(adapters("promote", "sub:1", "--alias", "production", "--json").stdout)
    assert promoted["to_version"] == 1
    assert json.loads(adapters("show", "sub@production", "--json").stdout)["sha256"] == registered["sha256"]
    adapters("pull", "sub@production", "--to", str(tmp_path / "out"))
    assert (tmp_path / "out" / "adapter_config.json").is_file()
    usage = adapters("list", "--limit", "0", code=2)
    assert usage.stderr.splitlines() == [
        "Error: Invalid value for '--limit': 0 is not in the range 1<=x<=2147483647. (see `adapters list "
        "--help`)"
    ]


def test_list_show_promote_import_no_torch_transformers_mlflow_or_orm(
    registry_env, tiny_base, make_lora
) -> None:
    register_adapter(make_lora(seed=1), name="light", base=tiny_base, metrics={"accuracy": 0.9})
    assert heavy_modules_after("list", "--json") == []
    assert heavy_modules_after("show", "light", "--json") == []
    assert heavy_modules_after("show", "light@production", code=1) == []
    assert heavy_modules_after("promote", "light:1", "--alias", "production", "--json") == []
    assert heavy_modules_after("show", "light@production", "--json") == []
    assert heavy_modules_after("history", "light", "--json") == []
    assert heavy_modules_after("bases", "--json") == []
    assert heavy_modules_after("demote", "light", "--alias", "production") == []
