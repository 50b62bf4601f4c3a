"""Every recipe under configs/ starts with the command that runs it and parses with that stage's parser.

Recipes that nothing tests rot (a key the library renamed breaks them silently); this test keeps every
file under configs/ in step with the dataclasses it feeds.
"""

import importlib
import shlex
from pathlib import Path

import pytest

from rlhf.cli import STAGES

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").rglob("*.yaml"))


def command_of(path: Path) -> list[str]:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# "), f"{path}: first line must be a comment holding the command that runs it"
    return shlex.split(first[2:])


def test_there_are_recipes():
    assert any("quickstart" in p.parts for p in CONFIGS)


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(ROOT)) for p in CONFIGS])
def test_recipe_parses_with_its_stage(path, monkeypatch):
    command = command_of(path)
    if command[0] == "accelerate":  # accelerate launch [...] -m rlhf.<stage> ...
        module_name = command[command.index("-m") + 1]
        args = command[command.index("-m") + 2 :]
    else:
        assert command[0] == "rlhf", f"{path}: the command should start with 'rlhf' or 'accelerate launch'"
        module_name = STAGES[command[1]][0]
        args = command[2:]
    assert "--config" in args and Path(args[args.index("--config") + 1]) == path.relative_to(ROOT), (
        f"{path}: its first-line command must name this very file"
    )
    module = importlib.import_module(module_name)
    seen = []
    monkeypatch.setattr(module, "main", lambda *configs: seen.append(configs))
    monkeypatch.chdir(ROOT)
    module.cli(args)
    assert len(seen) == 1 and all(c is not None for c in seen[0])
