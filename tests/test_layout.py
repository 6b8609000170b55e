"""The package's house rules, read from its source: imports go down the flow, no two modules
import each other (not even through others, nor lazily), library internals stay in compat/,
modules stay small, and makemore-report never loads Lightning.

The flow (docs/architecture.md): the leaves (errors, redaction, config, compat) → data → model →
training → sweeper → report → cluster → cli. A module may import its own stage, the leaves and the
stages before it, never one after it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "makemore_sweep"
STAGES = ("data", "model", "training", "sweeper", "report", "cluster", "cli")
LEAVES = ("errors", "redaction", "config", "compat")
THIRD_PARTY = (
    "lightning",
    "hydra",
    "hydra_plugins",
    "omegaconf",
    "optuna",
    "submitit",
    "wandb",
    "torch",
)
MAX_LINES = 500  # one concern may take 500 lines: split by concern, not by length (issue 19)


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def stage_of(module: str) -> str:
    """`makemore_sweep.sweeper.storage` → `sweep`; the package root and api count as the entry points."""
    parts = module.split(".")
    if len(parts) == 1:
        return "cli"  # `import makemore_sweep`: the root only holds the version and lazy API names
    return parts[1] if parts[1] in (*STAGES, *LEAVES) else "cli"


def rank(stage: str) -> int:
    return -1 if stage in LEAVES else STAGES.index(stage)


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
    return ".".join(parts)


def imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """Every module an import names, at any depth (lazy imports inside functions count too)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def test_imports_go_down_the_flow_only() -> None:
    against = []
    for path in modules():
        own = module_name(path)
        own_stage = stage_of(own)
        for line, target in imported_modules(ast.parse(path.read_text())):
            if not target.startswith("makemore_sweep") or target == "makemore_sweep":
                continue
            target_stage = stage_of(target)
            if own_stage in LEAVES and target_stage not in LEAVES:
                against.append(f"{own}:{line} (a leaf) imports {target}")
            elif own_stage not in LEAVES and rank(target_stage) > rank(own_stage):
                against.append(f"{own}:{line} ({own_stage}) imports {target} ({target_stage})")
    assert not against, "imports against the flow:\n" + "\n".join(against)


def import_graph() -> dict[str, set[str]]:
    """Each module of src/ (the package and its Hydra plugins) → the modules of src/ it imports,
    lazily or not.

    `from a.b import c` counts as importing `a.b.c` when that is a module, else `a.b`; parent
    packages are left out (their `__init__` stays trivial, see the root's lazy API names).
    """
    paths = [*modules(), *sorted((PACKAGE.parent / "hydra_plugins").rglob("*.py"))]
    names = {module_name(path) for path in paths}
    graph: dict[str, set[str]] = {}
    for path in paths:
        own = module_name(path)
        targets = set()
        for _, target in imported_modules(ast.parse(path.read_text())):
            while target and target not in names:
                target = target.rpartition(".")[0]
            if target and target != own and target != "makemore_sweep":
                targets.add(target)
        graph[own] = targets
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_no_import_cycle_anywhere_in_src() -> None:
    """Within a stage too: a cycle means no file can be read without the others (issue 19)."""
    cycles = import_cycles(import_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" ↔ ".join(c) for c in cycles)


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert import_cycles(graph) == [["a", "b", "c"]]


def private_names_we_define() -> set[str]:
    """Underscore names our own code defines: `obj._x` on one of those is not a library internal."""
    defined: set[str] = set()
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                defined.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                defined.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                defined.add(node.id)
            elif isinstance(node, ast.arg):
                defined.add(node.arg)
    return {name for name in defined if name.startswith("_")}


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_no_private_library_name_outside_compat() -> None:
    ours = private_names_we_define()
    found = []
    for path in modules():
        if path.parent.name == "compat":
            continue
        tree = ast.parse(path.read_text())
        for line, target in imported_modules(tree):
            if target.split(".")[0] in THIRD_PARTY and any(
                is_private(part) for part in target.split(".")
            ):
                found.append(f"{module_name(path)}:{line} imports {target}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and is_private(node.attr) and node.attr not in ours:
                found.append(f"{module_name(path)}:{node.lineno} uses .{node.attr}")
    assert not found, "library internals outside compat/:\n" + "\n".join(found)


def test_every_module_is_small_enough_to_read_in_one_sitting() -> None:
    long = {
        module_name(p): n for p in modules() if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_the_sweeper_has_at_most_nine_modules() -> None:
    """A reader learns the sweep in a few modules grouped by process (issue 25)."""
    sweeper = sorted(p.name for p in (PACKAGE / "sweeper").glob("*.py") if p.name != "__init__.py")
    assert len(sweeper) <= 9, f"sweeper/ has {len(sweeper)} modules: {sweeper}"


@pytest.mark.parametrize("entry", ["makemore_sweep.cli.report", "makemore_sweep.cli.dashboard"])
def test_the_report_commands_never_load_lightning(entry: str, tmp_path: Path) -> None:
    """Build a real report of a real (journal) study and look at what got imported."""
    journal = tmp_path / "study.log"
    script = f"""
import sys, optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
optuna.logging.set_verbosity(optuna.logging.WARNING)
study = optuna.create_study(study_name="s", storage=JournalStorage(JournalFileBackend({str(journal)!r})))
study.optimize(lambda t: (t.suggest_float("x", -1, 1) - 0.2) ** 2 + 2.0, n_trials=4)
import {entry}
if {entry!r}.endswith("report"):
    {entry}.main(["--storage", "journal:{journal}", "--study", "s", "--out", {str(tmp_path / "out")!r}])
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("lightning", "pytorch_lightning"))
print("LIGHTNING:", loaded)
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "LIGHTNING: []" in result.stdout, result.stdout[-2000:]
    if entry.endswith("report"):
        assert (tmp_path / "out" / "report.html").is_file()
