"""How the modules depend on each other: the moderation package has no import cycle, every module of it
imports on its own, and the model loaders do not pull in a training stage."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODERATION = ROOT / "rlhf" / "moderation"


def imported_modules(path: Path, prefix: str) -> set[str]:
    """The modules under ``prefix`` that ``path`` imports anywhere (module level or inside a function)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(prefix):
            names = [f"{node.module}.{a.name}" for a in node.names]
            found.add(node.module)  # `from rlhf.moderation import x`: the package itself
            found.update(n for n in names if (ROOT / (n.replace(".", "/") + ".py")).is_file())
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith(prefix))
    return found


def moderation_graph() -> dict[str, set[str]]:
    modules = {f"rlhf.moderation.{p.stem}": p for p in MODERATION.glob("*.py") if p.stem != "__init__"}
    graph = {name: imported_modules(path, "rlhf.moderation") - {name} for name, path in modules.items()}
    graph["rlhf.moderation"] = imported_modules(MODERATION / "__init__.py", "rlhf.moderation")
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that starts and ends at the same node, or None."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node], _ = "open", stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node], _ = "done", stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_moderation_package_has_no_import_cycle():
    graph = moderation_graph()
    assert len(graph) >= 17  # every module was read
    assert "rlhf.moderation.rules" in graph["rlhf.moderation.factory"]  # edges inside functions count
    assert find_cycle(graph) is None, find_cycle(graph)
    # the backends depend on the interface, never on the factory that builds them
    for backend in ("rules", "classifier", "guard", "cascade"):
        assert "rlhf.moderation.factory" not in graph[f"rlhf.moderation.{backend}"]
        assert "rlhf.moderation" not in graph[f"rlhf.moderation.{backend}"]


def test_each_moderation_module_imports_alone():
    """In one fresh interpreter, each module is imported first with no rlhf module loaded (third-party
    packages stay loaded, which is what makes it fast): an import cycle would fail here with a partly
    initialised module, whichever module of the cycle comes first."""
    names = sorted(n for n in moderation_graph() if n != "rlhf.moderation")
    script = textwrap.dedent(
        f"""
        import importlib, sys
        import torch, transformers  # loaded once, outside the rlhf modules under test
        failed = []
        for name in {names!r}:
            for loaded in [m for m in sys.modules if m == "rlhf" or m.startswith("rlhf.")]:
                del sys.modules[loaded]
            try:
                importlib.import_module(name)
            except Exception as err:
                failed.append(f"{{name}}: {{type(err).__name__}}: {{err}}")
        print("\\n".join(failed) or "ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok", done.stdout


def test_model_loading_does_not_import_a_training_stage():
    stages = {"rlhf.pretrain", "rlhf.sft", "rlhf.reward", "rlhf.ppo"}
    assert not imported_modules(ROOT / "rlhf" / "models.py", "rlhf") & stages
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, rlhf.models; print(sorted(m for m in sys.modules if m.startswith('rlhf.')))",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert not set(ast.literal_eval(done.stdout)) & stages, done.stdout
