"""The built-in task: a seeded small world of facts, its gold judge, and the data every stage trains on.

    from rlhf.task import World, GoldJudge, load_builtin

    world = World.generate(seed=0)
    judge = GoldJudge(world)
    judge.score("Where does Alma live?", "Alma lives in Oslo.")   # higher is better
    sft = load_builtin("sft")                                      # DatasetDict with train/test

``rlhf data --config configs/quickstart/data.yaml`` writes every dataset as JSONL so you can read it.
"""

from rlhf.task.builtin import BUILTIN_KINDS, DEFAULTS, builtin_rows, load_builtin
from rlhf.task.judge import GoldJudge, fact_completion_correct
from rlhf.task.moderation import CATEGORIES, safe_requests, unsafe_requests
from rlhf.task.world import Fact, World

__all__ = [
    "BUILTIN_KINDS",
    "CATEGORIES",
    "DEFAULTS",
    "Fact",
    "GoldJudge",
    "World",
    "builtin_rows",
    "fact_completion_correct",
    "load_builtin",
    "safe_requests",
    "unsafe_requests",
]
