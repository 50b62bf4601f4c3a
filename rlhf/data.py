"""`rlhf data`: write the built-in task's world and datasets to disk as JSONL, to read or to train from.

    rlhf data --config configs/quickstart/data.yaml

writes ``OUTPUT_DIR/world.json`` and ``OUTPUT_DIR/<kind>/<split>.jsonl`` for every kind (pretrain, facts, sft,
preference, prompts, moderation). Any stage takes such a folder as ``dataset_name`` (for example
``dataset_name: data/builtin/sft``), and takes the same data in memory as ``dataset_name: builtin``.
The same seed and options give the same bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from rlhf.config import run_cli, save_config


@dataclass
class DataArguments:
    """
    Arguments of the `rlhf data` stage.

    Args:
        seed (`int`, *optional*, defaults to `0`):
            Seed of the world (people and facts) and of every sampled phrasing and answer.
        num_people (`int`, *optional*, defaults to `24`):
            People in the world; each has 4 facts (city, job, pet, favourite colour).
        docs_per_person (`int`, *optional*, defaults to `48`):
            Pretraining documents per person.
        aside_rate (`float`, *optional*, defaults to `0.5`):
            Chance that a pretraining statement gets an aside after its subject, and (drawn again) a lead-in.
        preference_copies (`int`, *optional*, defaults to `4`):
            Training preference pairs per (fact, question template), each with freshly sampled answers.
        contrast_copies (`int`, *optional*, defaults to `1`):
            Extra training preference pairs per (fact, question template) whose two answers differ only in the
            object named (right vs wrong).
        margin_scale (`float`, *optional*, defaults to `0.5`):
            Preference rows get a `margin` column: this times the gold judge's score gap (`0`: no column).
        sft_copies (`int`, *optional*, defaults to `2`):
            SFT demonstrations per (fact, training question template), each in a sampled style.
        moderation_per_category (`int`, *optional*, defaults to `180`):
            Unsafe moderation training items per category (the test split gets a third of that).
        output_dir (`str`, *optional*, defaults to `"data/builtin"`):
            Where the JSONL files go.
        overwrite_output_dir (`bool`, *optional*, defaults to `False`):
            Replace data written before.
    """

    seed: int = field(default=0, metadata={"help": "Seed of the world and of every sampled phrasing."})
    num_people: int = field(default=24, metadata={"help": "People in the world (4 facts each)."})
    docs_per_person: int = field(default=48, metadata={"help": "Pretraining documents per person."})
    aside_rate: float = field(
        default=0.5, metadata={"help": "Chance of an aside, and of a lead-in, per pretraining statement."}
    )
    sft_copies: int = field(default=2, metadata={"help": "SFT demonstrations per (fact, question template)."})
    preference_copies: int = field(
        default=4, metadata={"help": "Training preference pairs per (fact, question template)."}
    )
    contrast_copies: int = field(
        default=1,
        metadata={"help": "Extra training pairs per (fact, question) differing only in the object."},
    )
    margin_scale: float = field(
        default=0.5, metadata={"help": "Preference margin = this x the gold score gap (0: no margin column)."}
    )
    moderation_per_category: int = field(
        default=180, metadata={"help": "Unsafe moderation training items per category."}
    )
    output_dir: str = field(default="data/builtin", metadata={"help": "Output directory."})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Replace data written before."})

    def task_kwargs(self) -> dict[str, float]:
        return {
            "num_people": self.num_people,
            "docs_per_person": self.docs_per_person,
            "aside_rate": self.aside_rate,
            "sft_copies": self.sft_copies,
            "preference_copies": self.preference_copies,
            "contrast_copies": self.contrast_copies,
            "margin_scale": self.margin_scale,
            "moderation_per_category": self.moderation_per_category,
        }


def main(args: DataArguments) -> dict:
    """Write the world and every built-in dataset; return the number of rows per kind and split."""
    from rlhf.runs import prepare_output_dir, write_metrics
    from rlhf.task import BUILTIN_KINDS, World, builtin_rows

    output_dir = prepare_output_dir(args.output_dir, args.overwrite_output_dir)
    world = World.generate(args.seed, args.num_people)
    (output_dir / "world.json").write_text(json.dumps(world.to_dict(), indent=1, ensure_ascii=False) + "\n")
    counts = {}
    for kind in BUILTIN_KINDS:
        (output_dir / kind).mkdir(exist_ok=True)
        for split, rows in builtin_rows(kind, args.seed, **args.task_kwargs()).items():
            lines = (json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
            (output_dir / kind / f"{split}.jsonl").write_text("".join(lines))
            counts[f"{kind}/{split}"] = len(rows)
    save_config(output_dir, args)
    write_metrics(output_dir, {"rows": counts})
    print(f"data: {len(world.facts)} facts about {len(world.people)} people -> {output_dir}")
    for name, n in counts.items():
        print(f"  {name + '.jsonl':<28} {n:>6} rows")
    return counts


def cli(argv=None):
    return run_cli(main, (DataArguments,), "rlhf data", argv)


if __name__ == "__main__":
    cli()
