"""A pytest plugin (``-p pytest_peft_alias``) that runs HF PEFT's tests against adapterlab or real ``peft``.

The harness (``run.py``) copies this file into a temporary folder, puts that folder on
``PYTHONPATH`` and starts pytest with ``-p pytest_peft_alias``, so it loads before HF's conftest
and test modules import anything. It is never installed and never part of the package.

With ``PEFT_SUITE_BACKEND=adapterlab`` it places a meta-path finder in front of every other that
answers ``import peft`` and ``import peft.<sub>`` with the matching adapterlab module itself (same
path, or the one ``RENAMES`` names). A name adapterlab lacks resolves to a placeholder that raises
when used, not when imported: HF's shared test helpers import every PEFT
method at the top, and one absent method must not fail the tests that never touch it.
Placeholders for HF's other methods raise ``RefusedMethod``; any other absent name raises
``MissingName``. ``peft.import_utils`` (HF's probes for optional backends, called by its test
helpers at collection) answers False for every backend. Both runs (adapterlab and the real-``peft``
baseline) get the same stand-in for ``diffusers`` (imported by HF's helpers for Stable Diffusion
tests only; not installed here).

Each test's outcome is appended as one JSON line to ``PEFT_SUITE_RESULTS`` as soon as it is known,
so a file stopped by the harness's timeout keeps the results it had.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
import types
from typing import Any

# HF module path -> adapterlab module path, where adapterlab keeps the names elsewhere
RENAMES = {
    "peft.mapping": "adapterlab.mapping",
    "peft.mapping_func": "adapterlab.mapping",
    "peft.utils.save_and_load": "adapterlab.checkpoint",
    "peft.utils.peft_types": "adapterlab.config",
    "peft.utils.other": "adapterlab.utils",
    "peft.utils.constants": "adapterlab.utils",
    "peft.tuners.prompt_tuning": "adapterlab.tuners.prompt.config",
    "peft.tuners.p_tuning": "adapterlab.tuners.prompt.config",
    "peft.tuners.prefix_tuning": "adapterlab.tuners.prompt.config",
    "peft.tuners.lora.bnb": "adapterlab.tuners.lora.layer",
    "peft.utils.hotswap": "adapterlab.tuners.lora.hotswap",
}

# HF PEFT's other methods (name prefixes, lower case): adapterlab implements LoRA and the prompt methods only
OTHER_METHODS = (
    "adalora",
    "adamss",
    "beft",
    "deft",
    "frod",
    "glora",
    "peanut",
    "psoft",
    "supertuning",
    "adaption",
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
    "lntuning",
    "loha",
    "lokr",
    "loraga",
    "lora_ga",
    "miss",
    "montelora",
    "monteclora",
    "multitask",
    "oft",
    "osf",
    "poly",
    "pvera",
    "randlora",
    "road",
    "shira",
    "supertuning",
    "tinylora",
    "trainable_tokens",
    "trainabletokens",
    "unilora",
    "vblora",
    "vera",
    "waveft",
    "xlora",
    "frod",
    "deft",
    "riemannian",
    "lorafa",
    "loraplus",
    "beft",
    "glora",
    "peanut",
    "psoft",
)


class MissingName(AttributeError):
    """A PEFT name that adapterlab does not provide was used."""


class RefusedMethod(NotImplementedError):
    """A PEFT method that adapterlab does not implement was used."""


def _is_other_method(name: str) -> bool:
    bare = name.lower().replace("_", "")
    return any(bare.startswith(m.replace("_", "")) for m in OTHER_METHODS)


def _error_for(qualname: str) -> Exception:
    leaf = qualname.rsplit(".", 1)[-1]
    if any(_is_other_method(part) for part in qualname.split(".")[1:]) or _is_other_method(leaf):
        return RefusedMethod(f"{qualname}: a PEFT method adapterlab does not implement")
    return MissingName(f"{qualname} is not provided by adapterlab")


# True while pytest imports the test modules: HF's modules build some test-case objects at import
# (e.g. ``LoraConfig(..., kasa_config=KasaConfig())``); a placeholder called then gives an inert
# stand-in, so that only the tests that use it fail, not the whole file.
_collecting = False


class _Inert:
    def __init__(self, qualname: str) -> None:
        self._qualname = qualname

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise _error_for(self._qualname)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise _error_for(self._qualname)

    def __repr__(self) -> str:
        return f"<placeholder {self._qualname}()>"


class _PlaceholderMeta(type):
    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if _collecting:
            return _Inert(cls.__qualname__)
        raise _error_for(cls.__qualname__)

    def __getattr__(cls, name: str) -> Any:
        if name.startswith("_"):  # introspection (inspect.signature asks for _partialmethod): plain absence
            raise AttributeError(name)
        raise _error_for(f"{cls.__qualname__}.{name}")


def placeholder(qualname: str) -> type:
    """A class that stands for an absent name: ``isinstance`` against it is False, using it raises."""
    return _PlaceholderMeta(qualname.rsplit(".", 1)[-1], (), {"__qualname__": qualname, "__module__": "peft"})


class MissingModule(types.ModuleType):
    """``peft.<sub>`` where adapterlab has no such module: every name in it is a placeholder."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.__path__: list[str] = []  # a package, so that deeper imports resolve here too

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        value = placeholder(f"{self.__name__}.{name}")
        setattr(self, name, value)
        return value


def _add_placeholder_fallback(module: types.ModuleType, alias: str) -> None:
    """Give the adapterlab module a PEP 562 ``__getattr__`` that turns absent names into placeholders.

    The module object itself is what ``peft.<sub>`` imports, so ``isinstance`` checks and
    ``monkeypatch.setattr(peft.<sub>, ...)`` act on adapterlab as they would on HF PEFT.
    """
    if module.__dict__.get("_peft_alias_fallback"):
        return
    previous = module.__dict__.get("__getattr__")

    def __getattr__(name: str) -> Any:
        if previous is not None:
            try:
                return previous(name)
            except AttributeError:
                pass
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return importlib.import_module(f"{module.__name__}.{name}")
        except ImportError:
            pass
        value = placeholder(f"{alias}.{name}")
        module.__dict__[name] = value
        return value

    module.__dict__["__getattr__"] = __getattr__
    module.__dict__["_peft_alias_fallback"] = True


class ImportUtilsStandIn(MissingModule):
    """HF's ``peft.import_utils``: probes for optional backends, which HF's test helpers call while
    collecting; no quantization backend is present here, and transformers' version is what it is."""

    def __getattr__(self, name: str) -> Any:
        if name == "is_transformers_ge_v5":
            import transformers
            from packaging import version

            return lambda: version.parse(transformers.__version__) >= version.parse("5")
        if name.startswith("is_"):
            return lambda *args, **kwargs: False
        return super().__getattr__(name)


def _adapterlab_module(name: str) -> types.ModuleType | None:
    target = RENAMES.get(name, "adapterlab" + name[len("peft") :])
    try:
        if importlib.util.find_spec(target) is None:
            return None
    except ModuleNotFoundError:
        return None
    return importlib.import_module(target)


class PeftAliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self) -> None:
        self._own_attrs: dict[int, tuple[Any, Any]] = {}

    def find_spec(
        self, fullname: str, path: Any = None, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "peft" and not fullname.startswith("peft."):
            return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        if spec.name == "peft.import_utils":
            return ImportUtilsStandIn(spec.name)
        module = _adapterlab_module(spec.name)
        if module is None:
            return MissingModule(spec.name)
        _add_placeholder_fallback(module, spec.name)
        self._own_attrs[id(module)] = (module.__spec__, module.__dict__.get("__path__"))
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        # importlib stamped the alias's spec on the adapterlab module: give it its own back. A package
        # __path__ it stamped on a plain module stays: HF imports submodules (peft.utils.other) of
        # what adapterlab keeps in one module, and those must resolve through this finder
        own = self._own_attrs.pop(id(module), None)
        if own is not None:
            module.__spec__, path = own
            if path is not None:
                module.__path__ = path


def _install_diffusers_stand_in() -> None:
    try:
        importlib.import_module("diffusers")
    except ImportError:
        stand_in = types.ModuleType("diffusers")
        stand_in.StableDiffusionPipeline = type("StableDiffusionPipeline", (), {})  # type: ignore[attr-defined]
        stand_in.__version__ = "0.0.0"  # type: ignore[attr-defined]  # HF's helpers compare it
        sys.modules["diffusers"] = stand_in


def _install() -> None:
    _install_diffusers_stand_in()
    if os.environ.get("PEFT_SUITE_BACKEND") == "adapterlab":
        for name in [m for m in sys.modules if m == "peft" or m.startswith("peft.")]:
            del sys.modules[name]
        sys.meta_path.insert(0, PeftAliasFinder())


_install()


def _record(nodeid: str, outcome: str, message: str) -> None:
    path = os.environ.get("PEFT_SUITE_RESULTS")
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"id": nodeid, "outcome": outcome, "message": message[:500]}) + "\n")


def _crash_message(report: Any) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        return str(crash.message)
    if isinstance(report.longrepr, tuple):  # a skip: (file, line, reason)
        return str(report.longrepr[2])
    return str(report.longrepr).strip().splitlines()[-1] if report.longrepr else ""


def pytest_runtest_logreport(report: Any) -> None:
    if (
        report.when == "call"
        or (report.when == "setup" and not report.passed)
        or (report.when == "teardown" and report.failed)
    ):
        outcome = "skipped" if report.skipped else report.outcome
        _record(report.nodeid, outcome, _crash_message(report) if not report.passed else "")


def pytest_collectreport(report: Any) -> None:
    if report.failed:
        _record(report.nodeid, "collect-error", _crash_message(report))


@contextlib.contextmanager
def _stay_offline(model_id: str) -> Any:
    yield


def _keep_hub_offline() -> None:
    """HF's ``hub_online_once`` switches offline mode off for a model's first download; with no network
    every such download then waits out retries. Keep it offline: those tests fail at once, in both runs."""
    try:
        helpers = importlib.import_module("tests.testing_utils")
    except Exception:  # not importable: the test files report that themselves
        return
    helpers.hub_online_once = _stay_offline


def _parameters_name_other_method(item: Any, names_other_method: Any) -> bool:
    params = getattr(getattr(item, "callspec", None), "params", {})
    for value in params.values():
        name = (
            value.__name__ if isinstance(value, type) else getattr(value, "_qualname", type(value).__name__)
        )
        if names_other_method(f"::{name.rsplit('.', 1)[-1]}"):
            return True
    return False


def pytest_collectstart(collector: Any) -> None:
    global _collecting
    if not _collecting:
        _keep_hub_offline()
    _collecting = True


def pytest_collection_finish(session: Any) -> None:
    global _collecting
    _collecting = False


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    """Keep LoRA and prompt-learning tests: drop those whose id names another HF PEFT method."""
    if os.environ.get("PEFT_SUITE_SELECT") != "1":
        return
    from peft_suite_selection import names_other_method

    kept = [item for item in items if not names_other_method(item.nodeid)]
    dropped = [item for item in items if names_other_method(item.nodeid)]
    # a test whose id hides its method (``config0``) but whose parameters are another method's config:
    # left out too, and recorded, so that the report leaves it out of the baseline as well
    by_params = [item for item in kept if _parameters_name_other_method(item, names_other_method)]
    for item in by_params:
        _record(item.nodeid, "deselected", "")
    kept = [item for item in kept if item not in by_params]
    dropped += by_params
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
