"""The whole built-in recipe, end to end, in one command.

    rlhf quickstart [--output_dir runs/quickstart]

Runs every stage of ``configs/quickstart/`` in order (tokenizer -> pretrain -> SFT -> reward model ->
RL [-> DPO, with ``--with_dpo true``] -> moderation classifier), each into ``OUTPUT_DIR/<stage>``, then
answers a few prompts through the moderated pipeline and prints a report of every stage's gold metric (also
written to ``OUTPUT_DIR/report.json``). A stage whose output directory already holds a finished run is skipped,
so an interrupted quickstart picks up where it stopped.
"""

from __future__ import annotations

import importlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rlhf.cli import STAGES
from rlhf.config import ConfigError, run_cli
from rlhf.runs import is_complete, read_metrics

CONFIG_ROOT = "runs/quickstart"  # the output root the quickstart YAMLs are written against


@dataclass
class QuickstartArguments:
    """Arguments of `rlhf quickstart`.

    Args:
        output_dir (`str`): where every stage's run directory and `report.json` go.
        config_dir (`str`): the recipe: one YAML per stage, named after the stage.
        stages (`list[str]`): the stages to run, in order.
        with_dpo (`bool`): also run `rlhf dpo` after the RL stage (about 1.5 min more on 2 CPU cores) and report
            its gold gain and KL beside PPO's.
        overwrite_output_dir (`bool`): re-run stages that already finished (their outputs are replaced).
        eval_split (`str`): the built-in split that pretraining's fact completion, the SFT, reward and RL
            stages and the pipeline step report on:
            `test` (the report), `validation` (to choose settings) or `blind` (a re-check in phrasings written
            before any model was evaluated on them). Training is the same whatever the split.
    """

    output_dir: str = field(default=CONFIG_ROOT, metadata={"help": "Where the stages' run directories go."})
    config_dir: str = field(default="configs/quickstart", metadata={"help": "One YAML recipe per stage."})
    stages: list[str] = field(
        default_factory=lambda: ["tokenizer", "pretrain", "sft", "reward", "ppo", "moderation-train"],
        metadata={"help": "Stages to run, in order."},
    )
    with_dpo: bool = field(default=False, metadata={"help": "Also run DPO after the RL stage."})
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Re-run stages that already finished."}
    )
    eval_split: str = field(
        default="test",
        metadata={"help": "Held-out split the stages report on: test, validation or blind."},
    )

    def __post_init__(self):
        if self.eval_split not in EVAL_SPLITS:
            raise ConfigError(
                f"eval_split: expected one of {', '.join(EVAL_SPLITS)}, got '{self.eval_split}'"
            )
        if (
            self.with_dpo and "dpo" not in self.stages
        ):  # right after the RL stage: both start from the SFT model
            after = self.stages.index("ppo") + 1 if "ppo" in self.stages else len(self.stages)
            self.stages = [*self.stages[:after], "dpo", *self.stages[after:]]


# Held-out splits of the built-in question kinds (rlhf.task.world.QUESTION_SPLITS without train).
EVAL_SPLITS = ("test", "validation", "blind")
# The argument that picks the held-out split each stage reports on.
SPLIT_ARGUMENTS = {
    "pretrain": "fact_split",
    "sft": "dataset_test_split",
    "reward": "dataset_test_split",
    "ppo": "dataset_test_split",
    "dpo": "dataset_test_split",
}


# The pipeline step answers with the RL policy through the trained moderators.
PIPELINE_NEEDS = ("ppo", "moderation-train")


def policy_headlines(name: str) -> list[tuple[str, str, str | None]]:
    """The report rows of a stage that trains a policy and compares it with the SFT policy (`rlhf.policy_eval`)."""
    return [
        ("gold_reward_sft", "gold reward, SFT policy", None),
        ("gold_reward_policy", f"gold reward, {name} policy", None),
        ("gold_reward_gain", f"gain ({name} - SFT)", "95% CI > 0"),
        ("gold_reward_gain_ci_low", "gain 95% CI low", "> 0"),
        ("gold_reward_gain_ci_high", "gain 95% CI high", None),
        ("kl_to_sft", "mean KL to SFT policy", None),
    ]


# The headline numbers of each stage: (metric key in its metrics.json, label, target or None).
HEADLINES: dict[str, list[tuple[str, str, str | None]]] = {
    "tokenizer": [("bytes_per_token", "bytes per token (validation)", None)],
    "pretrain": [
        ("eval_perplexity", "held-out perplexity", None),
        ("fact_accuracy_untrained", "fact completion, untrained", None),
        ("fact_accuracy", "fact completion, held-out phrasings", ">= 0.5"),
    ],
    "sft": [("answer_accuracy", "answer accuracy, held-out", ">= 0.8")],
    "reward": [
        ("pairwise_accuracy", "pairwise accuracy, held-out", ">= 0.9"),
        ("gold_rank_correlation", "rank correlation with the gold judge", None),
    ],
    "ppo": policy_headlines("RL"),
    "dpo": policy_headlines("DPO"),
    "moderation-train": [("f1", "classifier F1, held-out", ">= 0.9")],
    "pipeline": [
        ("unsafe_blocked_rate", "unsafe prompts blocked", ">= 0.95"),
        ("safe_answered_rate", "safe prompts answered", ">= 0.95"),
    ],
}


def _rebase(value: Any, output_dir: str) -> Any:
    """Point a recipe path written against runs/quickstart at ``output_dir`` instead."""
    if isinstance(value, str) and (value == CONFIG_ROOT or value.startswith(CONFIG_ROOT + "/")):
        return output_dir + value[len(CONFIG_ROOT) :]
    return value


def stage_argv(config_path: Path, output_dir: str, overwrite: bool, eval_split: str = "test") -> list[str]:
    """The command-line arguments that run one stage's recipe with its paths under ``output_dir``, reporting on
    ``eval_split`` where the stage evaluates on a held-out split of its dataset."""
    recipe = yaml.safe_load(config_path.read_text()) or {}
    argv = ["--config", str(config_path)]
    for key, value in recipe.items():
        rebased = _rebase(value, output_dir)
        if rebased != value:
            argv += [f"--{key}", str(rebased)]
    if config_path.stem in SPLIT_ARGUMENTS and eval_split != "test":
        argv += [f"--{SPLIT_ARGUMENTS[config_path.stem]}", eval_split]
    if overwrite:
        argv += ["--overwrite_output_dir", "true"]
    return argv


def stage_run_dir(stage: str, args: QuickstartArguments) -> str:
    """Where ``stage`` of the recipe writes its run, under ``args.output_dir``."""
    config_path = Path(args.config_dir) / f"{stage}.yaml"
    if not config_path.is_file():
        raise ConfigError(f"{config_path}: the quickstart recipe has no config for stage '{stage}'")
    recipe = yaml.safe_load(config_path.read_text()) or {}
    return _rebase(recipe.get("output_dir", f"{CONFIG_ROOT}/{stage}"), args.output_dir)


def run_stage(stage: str, args: QuickstartArguments) -> tuple[dict, float, bool]:
    """Run (or skip, when finished) one stage; returns its metrics, seconds taken and whether it ran."""
    config_path = Path(args.config_dir) / f"{stage}.yaml"
    run_dir = stage_run_dir(stage, args)
    if is_complete(run_dir) and not args.overwrite_output_dir:
        print(f"[quickstart] {stage}: finished run found in {run_dir}, skipping")
        return read_metrics(run_dir), 0.0, False
    print(f"\n[quickstart] {stage}: running -> {run_dir}", flush=True)
    start = time.perf_counter()
    module = importlib.import_module(STAGES[stage][0])
    metrics = module.cli(stage_argv(config_path, args.output_dir, args.overwrite_output_dir, args.eval_split))
    return (
        (metrics if isinstance(metrics, dict) else read_metrics(run_dir)),
        time.perf_counter() - start,
        True,
    )


def format_report(rows: list[dict]) -> str:
    """A plain-text table of the report rows."""
    header = ("stage", "metric", "value", "target")
    table = [header] + [(r["stage"], r["metric"], _fmt(r["value"]), r["target"] or "") for r in rows]
    widths = [max(len(str(row[i])) for row in table) for i in range(4)]
    lines = ["  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)) for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return "n/a" if value is None else str(value)


def main(args: QuickstartArguments) -> dict:
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    metrics_by_stage, seconds = {}, {}
    for stage in args.stages:
        metrics_by_stage[stage], seconds[stage], _ = run_stage(stage, args)

    report_stages = list(args.stages)
    missing = [stage for stage in PIPELINE_NEEDS if not is_complete(stage_run_dir(stage, args))]
    if missing:
        print(f"\n[quickstart] pipeline: skipped, it needs finished {' and '.join(missing)} runs")
    else:
        from rlhf.pipeline import demo_pipeline
        from rlhf.task import builtin_rows

        split = args.eval_split
        if split not in builtin_rows("moderation"):
            print(f"[quickstart] pipeline: the built-in moderation data has no '{split}' split; using 'test'")
            split = "test"
        metrics_by_stage["pipeline"] = demo_pipeline(
            Path(args.config_dir) / "pipeline.yaml", args.output_dir, split=split
        )
        report_stages.append("pipeline")

    rows = [
        {
            "stage": stage,
            "metric": label,
            "key": key,
            "value": metrics_by_stage[stage].get(key),
            "target": target,
        }
        for stage in report_stages
        for key, label, target in HEADLINES.get(stage, [])
    ]
    report = {"rows": rows, "seconds": seconds, "metrics": metrics_by_stage, "eval_split": args.eval_split}
    (output_dir / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True, default=str) + "\n")
    print(f"\nheld-out split: {args.eval_split}\n" + format_report(rows))
    print(f"\nreport: {output_dir / 'report.json'}")
    return report


def cli(argv=None):
    return run_cli(main, (QuickstartArguments,), "rlhf quickstart", argv)


if __name__ == "__main__":
    cli()
