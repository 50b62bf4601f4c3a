"""The whole built-in recipe, end to end, in one command.

    rlhf quickstart [--output_dir runs/quickstart]

Runs every stage of ``configs/quickstart/`` in order (tokenizer -> pretrain -> SFT -> reward model ->
RL [-> DPO, with ``--with_dpo true``] -> moderation classifier), each into ``OUTPUT_DIR/<stage>``, then
answers the held-out prompts through the moderated pipeline (:func:`demo_pipeline`, block rates by
:func:`block_rates`) and prints a report of every stage's gold metric (also written to
``OUTPUT_DIR/report.json``). A stage whose output directory already holds a finished run is skipped,
so an interrupted quickstart picks up where it stopped.
"""

from __future__ import annotations

import importlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from rlhf.cli import STAGES
from rlhf.config import ConfigError, run_cli
from rlhf.responses import STATUSES
from rlhf.runs import is_complete, read_metrics

if TYPE_CHECKING:
    from rlhf.pipeline import Pipeline

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
    """Point recipe paths written against runs/quickstart at ``output_dir`` instead (strings, and the strings
    inside mappings and lists, such as a moderation config's model paths)."""
    if isinstance(value, str) and (value == CONFIG_ROOT or value.startswith(CONFIG_ROOT + "/")):
        return output_dir + value[len(CONFIG_ROOT) :]
    if isinstance(value, Mapping):
        return {k: _rebase(v, output_dir) for k, v in value.items()}
    if isinstance(value, list):
        return [_rebase(v, output_dir) for v in value]
    return value


def stage_argv(config_path: Path, output_dir: str, overwrite: bool, eval_split: str = "test") -> list[str]:
    """The command-line arguments that run one stage's recipe with its paths under ``output_dir``, reporting on
    ``eval_split`` where the stage evaluates on a held-out split of its dataset."""
    recipe = yaml.safe_load(config_path.read_text()) or {}
    argv = ["--config", str(config_path)]
    for key, value in recipe.items():
        rebased = _rebase(value, output_dir) if isinstance(value, str) else value
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


# --------------------------------------------------------------------------------------------- pipeline step
def block_rates(pipe: Pipeline, texts: Sequence[str], unsafe: Sequence[int]) -> dict[str, Any]:
    """Run ``texts`` (user prompts) through ``pipe`` and measure what happened to safe and unsafe ones.

    Returns ``unsafe_blocked_rate`` (unsafe prompts not answered), ``safe_answered_rate``, the counts
    per status for each group, and the mean seconds per request.
    """
    began = time.perf_counter()
    responses = pipe.batch(list(texts))
    seconds = time.perf_counter() - began
    groups = {
        "safe": [r for r, u in zip(responses, unsafe, strict=True) if not u],
        "unsafe": [r for r, u in zip(responses, unsafe, strict=True) if u],
    }
    metrics: dict[str, Any] = {
        "num_prompts": len(responses),
        "seconds_per_request": seconds / max(1, len(texts)),
    }
    for group, items in groups.items():
        metrics[f"num_{group}"] = len(items)
        for status in STATUSES:
            metrics[f"{group}_{status}"] = sum(r.status == status for r in items)
    metrics["unsafe_blocked_rate"] = (
        (metrics["unsafe_blocked_input"] + metrics["unsafe_blocked_output"]) / len(groups["unsafe"])
        if groups["unsafe"]
        else None
    )
    metrics["safe_answered_rate"] = metrics["safe_answered"] / len(groups["safe"]) if groups["safe"] else None
    metrics["responses"] = responses
    return metrics


def demo_pipeline(
    config_path: str | os.PathLike,
    output_dir: str | os.PathLike,
    max_prompts: int | None = None,
    split: str = "test",
    dataset_name: str = "builtin",
) -> dict[str, Any]:
    """The quickstart's last step: build the pipeline from ``config_path`` (its ``runs/quickstart`` paths,
    and those inside its moderation file, pointed at ``output_dir``) and run the built-in task's held-out
    user prompts (side "input" of the moderation data: all of them, or ``max_prompts``, safe and unsafe halves)
    through it, each distinct prompt once (rates count prompts, not repeats). ``dataset_name``: any moderation
    dataset `rlhf moderation-eval` reads (with ``text``, ``side`` and ``unsafe`` columns) instead of the
    built-in one.

    Writes ``OUTPUT_DIR/pipeline/metrics.json`` and ``samples.jsonl`` (a few answered and blocked
    requests: prompt, status, categories, shown text) and returns the metrics, among them
    ``unsafe_blocked_rate`` and ``safe_answered_rate``.
    """
    from rlhf.config import parse_args
    from rlhf.moderation.data import load_split
    from rlhf.pipeline import Pipeline
    from rlhf.pipeline_config import PipelineConfig, moderation_mapping
    from rlhf.runs import write_metrics

    (config,) = parse_args((PipelineConfig,), ["--config", str(config_path)], prog="rlhf chat")
    output_dir = str(output_dir).rstrip("/")
    config.model_name_or_path = _rebase(config.model_name_or_path, output_dir)
    config.tokenizer_name_or_path = _rebase(config.tokenizer_name_or_path, output_dir)
    for inline, path in (
        ("moderation", "moderation_config"),
        ("output_moderation", "output_moderation_config"),
    ):
        mapping = moderation_mapping(getattr(config, inline), getattr(config, path))
        setattr(config, inline, _rebase(mapping, output_dir) if mapping is not None else None)
        setattr(config, path, None)
    pipe = Pipeline.from_config(config)

    data = load_split(dataset_name, split)
    rows = list({r["text"]: r for r in data if r["side"] == "input"}.values())  # each distinct prompt once
    safe, unsafe = [r for r in rows if not r["unsafe"]], [r for r in rows if r["unsafe"]]
    if max_prompts is not None:
        safe = safe[: max_prompts // 2]
        unsafe = unsafe[: max_prompts - len(safe)]
    chosen = safe + unsafe
    metrics = block_rates(pipe, [r["text"] for r in chosen], [int(r["unsafe"]) for r in chosen])
    responses = metrics.pop("responses")

    run_dir = Path(output_dir) / "pipeline"
    run_dir.mkdir(parents=True, exist_ok=True)
    samples = []
    for status in STATUSES:
        picked = [(row, r) for row, r in zip(chosen, responses, strict=True) if r.status == status][:3]
        samples += [
            {
                "prompt": row["text"],
                "unsafe": int(row["unsafe"]),
                "status": r.status,
                "categories": r.flagged_categories,
                "shown": r.text,
            }
            for row, r in picked
        ]
    (run_dir / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    write_metrics(run_dir, metrics)
    return metrics


def target_met(value: Any, target: str | None) -> bool | None:
    """Whether ``value`` meets a report target such as ">= 0.8" or "95% CI > 0" (None: no target)."""
    if target is None:
        return None
    op, bound = target.split()[-2:]
    if not isinstance(value, int | float):
        return False
    return value >= float(bound) if op == ">=" else value > float(bound)


def format_report(rows: list[dict]) -> str:
    """A plain-text table of the report rows; a value that misses its target says so."""
    header = ("stage", "metric", "value", "target")
    table = [header] + [
        (
            r["stage"],
            r["metric"],
            _fmt(r["value"]) + (" (miss)" if r.get("met") is False else ""),
            r["target"] or "",
        )
        for r in rows
    ]
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
            "met": target_met(metrics_by_stage[stage].get(key), target),
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
