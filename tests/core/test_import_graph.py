"""Modules form layered graphs: no import cycles in the core or the registry; the format facts need no torch.

Every import of an adapterlab module counts, at the top of a file or inside a function (only
``if TYPE_CHECKING:`` blocks are left out): an import moved into a function to dodge a cycle
would still be a cycle, just one that bites at run time.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import adapterlab
import adapterlab.registry


def _module_name(package: str, root: Path, path: Path) -> str:
    parts = [*package.split("."), *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(tree: ast.AST, modules: set[str]) -> set[str]:
    """The adapterlab modules a file imports, anywhere but under ``if TYPE_CHECKING:``."""
    found: set[str] = set()
    pending: list[ast.AST] = [tree]
    while pending:
        node = pending.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                found.add(child.module)
                found.update(f"{child.module}.{alias.name}" for alias in child.names)
            pending.append(child)
    return found & modules


def import_graph(package: str, root: Path) -> dict[str, set[str]]:
    """Module -> the modules of the same tree it imports. The registry's folder sits outside
    ``adapterlab/`` (setup.py maps it), so the walk stays inside ``root``."""
    paths = {_module_name(package, root, path): path for path in root.rglob("*.py")}
    modules = set(paths)
    return {name: _imported(ast.parse(path.read_text()), modules) - {name} for name, path in paths.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that ends where it starts, or None."""
    state: dict[str, str] = {}  # absent: unseen, "open": on the current path, "done": no cycle through it

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return [*path[path.index(target) :], target]
            if target not in state:
                cycle = visit(target, [*path, target])
                if cycle:
                    return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start, [start])
            if cycle:
                return cycle
    return None


def test_the_cycle_finder_finds_a_cycle_through_a_function_level_import() -> None:
    tree = ast.parse("import a.b\ndef f():\n    from a.c import x\nif TYPE_CHECKING:\n    import a.d\n")
    assert _imported(tree, {"a.b", "a.c", "a.d"}) == {"a.b", "a.c"}
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


CORE = Path(adapterlab.__file__).parent
REGISTRY = Path(adapterlab.registry.__file__).parent


def core_import_graph() -> dict[str, set[str]]:
    return import_graph("adapterlab", CORE)


@pytest.mark.parametrize(
    ("package", "root", "edge"),
    [
        ("adapterlab", CORE, ("adapterlab.config", "adapterlab.hf_format")),
        (
            "adapterlab.registry",
            REGISTRY,
            ("adapterlab.registry.db.migrate", "adapterlab.registry.db.database"),
        ),
    ],
    ids=["core", "registry"],
)
def test_the_import_graph_has_no_cycles(package: str, root: Path, edge: tuple[str, str]) -> None:
    graph = import_graph(package, root)
    assert edge[1] in graph[edge[0]]  # the graph sees real edges
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_hf_format_is_a_leaf_that_imports_no_torch() -> None:
    assert core_import_graph()["adapterlab.hf_format"] == set()
    code = "import sys, json, adapterlab.hf_format, adapterlab.config; print(json.dumps(sorted(sys.modules)))"
    loaded = json.loads(
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    )
    assert not [name for name in loaded if name.split(".")[0] in ("torch", "transformers", "safetensors")]


def test_every_task_has_a_transformers_class_and_a_peft_model_class() -> None:
    import transformers
    from transformers.models.auto import modeling_auto

    from adapterlab.hf_format import TASKS, TaskType
    from adapterlab.mapping import MODEL_TYPE_TO_PEFT_MODEL_MAPPING

    assert set(TASKS) == set(TaskType) == set(MODEL_TYPE_TO_PEFT_MODEL_MAPPING)
    for task_type, task in TASKS.items():
        assert hasattr(transformers, task.auto_class), task_type
        assert isinstance(getattr(modeling_auto, task.model_types), dict), task_type
        assert MODEL_TYPE_TO_PEFT_MODEL_MAPPING[task_type].head_modules == task.head_modules
