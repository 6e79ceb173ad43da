"""A base is its fingerprint (and Hub id), not a folder: found again on "another machine", or refused.

"Another machine" is simulated by moving the base's folder (or the Hugging Face cache) after
registering: the recorded folder is gone, and the registry must find the weights elsewhere (by
``--base``, a recorded location, the cache) or say what it tried, at once, without the network.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from models import save_lora_adapter, save_tiny_model
from safetensors.numpy import save_file

from adapterlab.cli.main import cli
from adapterlab.errors import BaseModelMismatch, BaseModelNotFound
from adapterlab.registry import default_registry, locate_base, register_adapter, show
from adapterlab.registry.hub_access import hub_reachable

TEXT = "My parcel never arrived"
CLOSED_PORT = "http://127.0.0.1:9"  # discard port: nothing listens, the connection is refused at once
REVISION = "0123456789abcdef0123456789abcdef01234567"
SQLITE_ONLY = pytest.mark.parametrize("registry_url", ["sqlite"], indirect=True)


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny BERT classifier base (with MiniLM's tokenizer) and a LoRA adapter trained on it."""
    root = tmp_path_factory.mktemp("classifier")
    base = save_tiny_model(root / "base", "SEQ_CLS")
    return base, save_lora_adapter(base, root / "adapter", "SEQ_CLS")


@pytest.fixture
def offline_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty Hugging Face cache and a Hub endpoint that refuses connections."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_ENDPOINT", CLOSED_PORT)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return cache


@pytest.fixture
def moved(registry_env, offline_hub, classifier, tmp_path: Path) -> Iterator[dict]:
    """The classifier registered from one folder, whose base then moved to another."""
    base, adapter = classifier
    here = shutil.copytree(base, tmp_path / "machine-a" / "base")
    register_adapter(adapter, name="cls", base=here, base_name="tiny-cls-base", task_type="SEQ_CLS")
    expected = predict_json("cls")
    there = tmp_path / "machine-b" / "base"
    there.parent.mkdir()
    shutil.move(here, there)
    yield {"old": here, "new": there, "expected": expected}


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def predict_json(ref: str, *extra: str) -> dict:
    code, out, err = run("predict", ref, "--text", TEXT, "--json", *extra)
    assert code == 0, err
    return json.loads(out)


def other_weights(folder: Path) -> Path:
    folder.mkdir(parents=True)
    save_file({"weight": np.ones((2, 2), dtype=np.float32)}, str(folder / "model.safetensors"))
    return folder


@SQLITE_ONLY
def test_a_moved_base_is_used_through_base_option(moved) -> None:
    code, _, err = run("predict", "cls", "--text", TEXT)
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert f"registered folder {moved['old']} (missing)" in err
    assert "--base PATH|HUB_ID" in err and "adapters base add-location" in err and "cls:1" in err
    assert predict_json("cls", "--base", str(moved["new"])) == moved["expected"]


@SQLITE_ONLY
def test_add_location_then_predict_without_base(moved) -> None:
    code, out, err = run("base", "add-location", "tiny-cls-base", str(moved["new"]))
    assert code == 0, err
    assert str(moved["new"]) in out
    assert predict_json("cls") == moved["expected"]
    code, out, _ = run("base", "add-location", "tiny-cls-base", str(moved["new"]), "--json")
    assert code == 0 and json.loads(out)["path"] == str(moved["new"])  # recorded once, reported again


def test_add_location_refuses_other_weights(registry_env, tiny_base, other_base, make_lora) -> None:
    register_adapter(make_lora(seed=1), name="a", base=tiny_base)
    registry = default_registry()
    with pytest.raises(BaseModelMismatch, match="holds other weights"):
        registry.add_base_location("tiny-bert", other_base)
    location = registry.add_base_location("tiny-bert", tiny_base)
    assert (location.name, location.path) == ("tiny-bert", str(tiny_base))


def test_a_wrong_base_folder_is_refused(registry_env, tiny_base, other_base, make_lora) -> None:
    from adapterlab.registry import load

    register_adapter(make_lora(seed=1), name="a", base=tiny_base)
    with pytest.raises(BaseModelMismatch, match=r"a:1: --base .* holds other weights"):
        load("a", base=other_base)
    assert load("a", base=other_base, allow_base_mismatch=True) is not None
    assert load("a", base=tiny_base) is not None


def test_a_changed_registered_folder_is_skipped_for_a_verified_copy(
    registry_env, offline_hub, tiny_base, make_lora, tmp_path: Path
) -> None:
    first = shutil.copytree(tiny_base, tmp_path / "first")
    register_adapter(make_lora(seed=1), name="a", base=first)
    shutil.rmtree(first)
    other_weights(first)
    database = default_registry().database
    with pytest.raises(BaseModelNotFound, match=f"tried: registered folder {first} \\(other weights\\)"):
        locate_base(show("a").base, database=database)
    register_adapter(make_lora(seed=2), name="b", base=tiny_base)  # same weights, another folder
    assert locate_base(show("a").base, database=database) == tiny_base
    shutil.rmtree(first)
    with pytest.raises(BaseModelNotFound) as caught:
        locate_base(show("a").base, given=first, database=database)
    assert "is no folder and no Hub id" in str(caught.value)


def test_nothing_found_lists_what_was_tried_at_once(
    registry_env, offline_hub, tiny_base, make_lora, tmp_path: Path
) -> None:
    snapshot = fake_snapshot(offline_hub, tiny_base)
    register_adapter(make_lora(seed=1), name="a", base=snapshot)
    base = show("a").base
    assert (base.hub_id, base.revision) == ("someone/tiny-bert", REVISION)
    shutil.rmtree(offline_hub / "models--someone--tiny-bert")
    started = time.monotonic()
    with pytest.raises(BaseModelNotFound) as caught:
        locate_base(base, database=default_registry().database)
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert "\n" not in message
    for tried in (
        f"registered folder {snapshot} (missing)",
        f"the Hugging Face cache (no someone/tiny-bert@{REVISION})",
        "the Hub (offline)",
        "pass --base PATH|HUB_ID",
        "adapters base add-location",
    ):
        assert tried in message
    started = time.monotonic()  # the same through the CLI: one line, exit 1, nothing written
    code, _, err = run("export", "a", "--to", str(tmp_path / "merged"), "--merged")
    assert time.monotonic() - started < 5
    assert code == 1 and len(err.strip().splitlines()) == 1 and "the Hub (offline)" in err
    assert not (tmp_path / "merged").exists()


def test_offline_is_known_without_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", CLOSED_PORT)
    started = time.monotonic()
    assert not hub_reachable()
    monkeypatch.setenv("HF_ENDPOINT", "http://10.255.255.1:80")  # unroutable: silence, not refusal
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert not hub_reachable()  # the flag answers before any probe
    assert time.monotonic() - started < 1


def fake_snapshot(cache: Path, base: Path, repo: str = "someone/tiny-bert") -> Path:
    """``base`` laid out as huggingface_hub caches a download of ``repo`` at ``REVISION``."""
    root = cache / f"models--{repo.replace('/', '--')}"
    snapshot = shutil.copytree(base, root / "snapshots" / REVISION)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(REVISION)
    return snapshot


def test_the_hub_cache_is_found_for_the_hub_id(
    registry_env, offline_hub, tiny_base, make_lora, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import AutoModel

    snapshot = fake_snapshot(offline_hub, tiny_base)
    register_adapter(make_lora(seed=1), name="a", base=snapshot)
    # another machine: its own cache, elsewhere, with the same model in it
    cache_b = tmp_path / "machine-b-cache"
    shutil.move(offline_hub, cache_b)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache_b))
    found = locate_base(show("a").base, database=default_registry().database)
    assert found == cache_b / "models--someone--tiny-bert" / "snapshots" / REVISION
    assert locate_base(show("a").base, given="someone/tiny-bert") == found
    with pytest.raises(BaseModelNotFound, match="not in the Hugging Face cache.*not reachable"):
        locate_base(show("a").base, given="someone/other-model")
    from adapterlab.registry import load

    assert load("a") is not None
    assert load("a", AutoModel.from_pretrained(found)) is not None
    assert show("a").config["base_model_name_or_path"] == "someone/tiny-bert"


def file_texts(folder: Path) -> dict[str, bytes]:
    return {str(path): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


@SQLITE_ONLY
def test_no_local_path_is_stored_or_exported(registry_env, offline_hub, classifier, tmp_path: Path) -> None:
    base, adapter = classifier
    assert str(base) in (adapter / "adapter_config.json").read_text()  # what save_pretrained wrote
    version = register_adapter(adapter, name="cls", base=base, base_name="tiny-cls-base")
    assert version.config["base_model_name_or_path"] == "tiny-cls-base"
    stored = Path(version.artifact_uri.removeprefix("file://"))
    plain, merged = tmp_path / "plain", tmp_path / "merged"
    assert run("export", "cls", "--to", str(plain))[0] == 0
    code, _, err = run("export", "cls", "--to", str(merged), "--merged", "--base", str(base))
    assert code == 0, err
    for folder in (stored, plain, merged):
        for path, content in file_texts(folder).items():
            for local in (str(base), str(base.parent), str(tmp_path)):
                assert local.encode() not in content, (path, local)
    config = json.loads((plain / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "tiny-cls-base"
    assert "base_model: tiny-cls-base" in (plain / "README.md").read_text()


def test_export_of_a_version_stored_with_a_local_path_is_made_portable(
    registry_env, classifier, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Versions registered before configs were made portable still export without the path."""
    import contextlib

    import adapterlab.registry.register as register

    base, adapter = classifier
    monkeypatch.setattr(register, "portable_folder", lambda folder, _base: contextlib.nullcontext(folder))
    version = register_adapter(adapter, name="old", base=base, base_name="tiny-cls-base")
    assert version.config["base_model_name_or_path"] == str(base)  # stored as an older adapterlab did
    assert run("export", "old", "--to", str(tmp_path / "out"))[0] == 0
    config = json.loads((tmp_path / "out" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "tiny-cls-base"


def test_only_local_paths_are_replaced(registry_env, tiny_base, make_lora) -> None:
    from adapterlab.registry.files.portable_config import portable_config

    base = register_adapter(make_lora(seed=1), name="a", base=tiny_base).base
    for kept in ("tiny-bert", "org/model", None):
        assert portable_config({"base_model_name_or_path": kept}, base) == {"base_model_name_or_path": kept}
    for local in (str(tiny_base), "./models/x", "~/x", "C:\\models\\x", "a/b/c"):
        config = {"base_model_name_or_path": local, "tokenizer_name_or_path": local, "r": 4}
        assert portable_config(config, base) == {
            "base_model_name_or_path": "tiny-bert",
            "tokenizer_name_or_path": "tiny-bert",
            "r": 4,
        }


def test_a_stale_name_in_the_config_is_no_hub_id(registry_env, tiny_base, make_lora, tmp_path: Path) -> None:
    """Old configs carry ``_name_or_path`` of the model they were fine-tuned from (MiniLM's names
    nreimers/MiniLM-L6-H384-uncased): a Hub id only when no other name was given."""
    base = shutil.copytree(tiny_base, tmp_path / "minilm-like")
    config = json.loads((base / "config.json").read_text())
    (base / "config.json").write_text(json.dumps({**config, "_name_or_path": "someone/parent"}))
    named = register_adapter(make_lora(seed=1), name="named", base=base, base_name="team/base").base
    assert (named.name, named.hub_id, named.portable_name) == ("team/base", None, "team/base")
    unnamed = register_adapter(make_lora(seed=2), name="unnamed", base=base).base
    assert (unnamed.name, unnamed.hub_id) == ("someone/parent", "someone/parent")


def test_the_probe_goes_through_a_configured_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        monkeypatch.setenv("HF_ENDPOINT", "https://hub.invalid")  # unresolvable: only the proxy answers
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        assert not hub_reachable()
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{server.getsockname()[1]}")
        assert hub_reachable()


def test_load_takes_one_base(registry_env, tiny_base, make_lora) -> None:
    from transformers import AutoModel

    from adapterlab.errors import InvalidConfig
    from adapterlab.registry import load

    register_adapter(make_lora(seed=1), name="a", base=tiny_base)
    with pytest.raises(InvalidConfig, match="not both"):
        load("a", AutoModel.from_pretrained(tiny_base), base=tiny_base)


def test_a_base_s_own_folders_come_before_those_of_another_name(
    registry_env, tiny_base, make_lora, tmp_path: Path
) -> None:
    from adapterlab.registry.base_locations import registered_locations

    copy = shutil.copytree(tiny_base, tmp_path / "copy")
    register_adapter(make_lora(seed=1), name="a", base=tiny_base, base_name="first-name")
    register_adapter(make_lora(seed=2), name="b", base=copy, base_name="second-name")  # same weights
    database = default_registry().database
    assert registered_locations(database, show("a").base) == [str(tiny_base), str(copy)]
    assert registered_locations(database, show("b").base) == [str(copy), str(tiny_base)]
