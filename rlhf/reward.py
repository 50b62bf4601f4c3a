"""Reward-model stage: TRL's ``RewardTrainer`` on a scalar sequence classifier, with LoRA.

    rlhf reward --config configs/quickstart/reward.yaml [--key value ...]
    accelerate launch --config_file launch/cpu_ddp.yaml -m rlhf.reward --config configs/quickstart/reward.yaml

Glue in the style of ``trl/scripts/reward.py``. The model is ``AutoModelForSequenceClassification``
(``num_labels=1``) initialised from ``model_name_or_path`` (normally the SFT stage's ``merged/``); LoRA
trains the adapter and the ``score`` head (``modules_to_save``). Pairs are tokenised with the chat template
and cut right after the answer's end-of-turn token, which is where the RL trainers read the reward of a
generated answer. The run directory gets the adapter, ``merged/`` (what the RL stage loads as reward and
value model), ``rewards.png`` (chosen vs rejected rewards on held-out pairs), ``metrics.json``
(``pairwise_accuracy``, ``mean_margin``, and with the built-in task ``gold_rank_correlation``: Kendall's
tau-b between the model's and the gold judge's order of every answer style of a held-out question) and a model card.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import trl
from transformers import set_seed
from trl import ModelConfig, get_peft_config

from rlhf.config import ConfigError, config_to_dict, run_cli
from rlhf.datasets import DatasetArguments
from rlhf.evaluation import (
    gold_rank_correlation,
    markdown_table,
    pairwise_accuracy,
    plot_histogram,
    prompt_text,
    score_sequences,
)
from rlhf.models import auto_precision, count_parameters, load_reward_model, load_tokenizer, save_merged
from rlhf.preference_eval import fit_pairs, held_out_report, tokenize_pairs
from rlhf.runs import plot_curves, prepare_output_dir, write_metrics, write_model_card
from rlhf.stages import (
    curves,
    defer_hub_push,
    hub_datasets,
    last_logged,
    push_run,
    reset_accelerate_state,
    restore_hub_push,
    start_run,
)
from rlhf.task.builtin import answer_sets


@dataclass
class RewardScriptArguments(DatasetArguments):
    """
    Arguments of the reward stage besides TRL's `RewardConfig` and `ModelConfig` (plus the dataset fields of
    `rlhf.datasets.DatasetArguments`).

    Args:
        tokenizer_name_or_path (`str` or `None`, *optional*, defaults to `None`):
            Tokenizer to use (`None`: the model's own).
        gguf_file (`str` or `None`, *optional*, defaults to `None`):
            GGUF file inside `model_name_or_path` to load (or give the `.gguf` path as `model_name_or_path`).
        eval_pairs (`int` or `None`, *optional*, defaults to `None`):
            Held-out pairs scored after training for accuracy, margin and the histogram
            (`None`: all of them).
        eval_score_batch_size (`int`, *optional*, defaults to `64`):
            Sequences per forward pass in that evaluation.
        card_samples (`int`, *optional*, defaults to `6`):
            Held-out pairs with their rewards shown in the model card.
        eval_baselines (`bool`, *optional*, defaults to `True`):
            Score the held-out pairs with the base model's mean log-probability per answer token too (loads
            `model_name_or_path` as a causal LM once more); "the longer answer wins" is always measured.
        save_merged (`bool`, *optional*, defaults to `True`):
            Also save the reward model with the adapter merged in `output_dir/merged` (what the RL stage loads).
        overwrite_output_dir (`bool`, *optional*, defaults to `False`):
            Replace a finished run in `output_dir`.
    """

    tokenizer_name_or_path: str | None = field(
        default=None, metadata={"help": "Tokenizer (None: the model's)."}
    )
    gguf_file: str | None = field(default=None, metadata={"help": "GGUF file inside model_name_or_path."})
    eval_pairs: int | None = field(
        default=None, metadata={"help": "Held-out pairs scored after training (None: all)."}
    )
    eval_score_batch_size: int = field(
        default=64, metadata={"help": "Sequences per forward pass when scoring."}
    )
    card_samples: int = field(default=6, metadata={"help": "Held-out pairs shown in the model card."})
    eval_baselines: bool = field(
        default=True, metadata={"help": "Also score held-out pairs by the base model's mean log-probability."}
    )
    save_merged: bool = field(
        default=True, metadata={"help": "Also save the merged reward model in output_dir/merged."}
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Replace a finished run in output_dir."}
    )


@dataclass
class RewardConfig(trl.RewardConfig):
    __doc__ = (
        "TRL's `RewardConfig`, except that `bf16` left unset means: on where the hardware has fast bf16 (a bf16 GPU, "
        "or a CPU with bf16 instructions), off elsewhere.\n\n" + (trl.RewardConfig.__doc__ or "")
    )

    bf16: bool | None = field(
        default=None, metadata={"help": "bf16 mixed precision (unset: on where the hardware has fast bf16)."}
    )

    def __post_init__(self):
        auto_precision(self)
        super().__post_init__()


def reward_peft_config(model_args: ModelConfig):
    """LoRA for a sequence classifier: task SEQ_CLS, and the ``score`` head trained in full."""
    if not model_args.use_peft:
        return None
    if model_args.lora_task_type == "CAUSAL_LM":  # ModelConfig's default is for language models
        model_args.lora_task_type = "SEQ_CLS"
    config = get_peft_config(model_args)
    config.modules_to_save = sorted(set(config.modules_to_save or []) | {"score"})
    return config


def main(script_args: RewardScriptArguments, training_args: RewardConfig, model_args: ModelConfig) -> dict:
    """Train the reward model, save the adapter and the merged model, evaluate; returns metrics.json's content."""
    wall_start = time.perf_counter()
    if not model_args.model_name_or_path:
        raise ConfigError("set model_name_or_path (normally the SFT stage's merged/ directory)")
    from accelerate import PartialState

    state = PartialState()
    prepare_output_dir(
        training_args.output_dir, script_args.overwrite_output_dir
    )  # refuse a finished run first

    tokenizer = load_tokenizer(
        script_args.tokenizer_name_or_path or model_args.model_name_or_path,
        chat_template_path=training_args.chat_template_path,
        gguf_file=script_args.gguf_file,
        trust_remote_code=training_args.trust_remote_code,
        revision=model_args.model_revision,
    )
    data = script_args.load("preference", training_args.seed)
    output_dir = start_run(  # the input is usable: now the run directory gets its config
        training_args.output_dir, script_args.overwrite_output_dir, state.is_main_process,
        script_args, training_args, model_args,
    )  # fmt: skip
    if state.is_main_process:
        script_args.save_split(output_dir)  # a carved split: later stages and reruns read the same rows
    with state.main_process_first():  # too-long pairs lose prompt tokens from the left; TRL then drops none
        train, fit = fit_pairs(tokenize_pairs(data["train"], tokenizer), training_args.max_length, "train")
        test, fit_test = fit_pairs(tokenize_pairs(data["test"], tokenizer), training_args.max_length, "eval")
    set_seed(training_args.seed)  # the score head is initialised at random
    model = load_reward_model(
        model_args.model_name_or_path,
        dtype=model_args.dtype,
        gguf_file=script_args.gguf_file,
        trust_remote_code=training_args.trust_remote_code,
        revision=model_args.model_revision,
        pad_token_id=tokenizer.pad_token_id,
    )

    push_to_hub = defer_hub_push(training_args)  # pushed once, finished, by push_run below
    trainer = trl.RewardTrainer(
        model=model,
        args=training_args,
        train_dataset=train,
        eval_dataset=test,
        processing_class=tokenizer,
        peft_config=reward_peft_config(model_args),
    )
    trainable, total = count_parameters(trainer.model)
    trainer.accelerator.print(
        f"reward: {len(train)} train / {len(test)} held-out pairs; {trainable:,} of {total:,} parameters trainable"
    )
    train_result = trainer.train()
    trainer.save_model(str(output_dir))
    restore_hub_push(training_args, push_to_hub)

    metrics = {
        "train_loss": last_logged(trainer.state.log_history, "loss"),
        "train_loss_first": next((e["loss"] for e in trainer.state.log_history if "loss" in e), None),
        "train_accuracy": last_logged(trainer.state.log_history, "accuracy"),
        "steps": trainer.state.global_step,
        "train_runtime_s": train_result.metrics.get("train_runtime"),
        "train_samples_per_second": train_result.metrics.get("train_samples_per_second"),
        "train_tokens": last_logged(trainer.state.log_history, "num_tokens"),  # non-pad tokens, all processes
        "trainable_parameters": trainable,
        "total_parameters": total,
        "num_processes": trainer.accelerator.num_processes,
        "bf16": bool(training_args.bf16),
        **fit,
        **fit_test,
        **script_args.data_metrics(),
        "eval_split": script_args.dataset_test_split,
    }
    if trainer.accelerator.is_main_process:
        # without accelerate's mixed-precision forward: scores in the saved model's own precision
        model = trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)
        if script_args.save_merged:
            save_merged(model, tokenizer, output_dir / "merged")
        rows, held_out = evaluate_pairs(model, tokenizer, test, script_args, training_args.seed)
        held_out.update(held_out_report(rows, test, tokenizer, script_args, model_args, training_args.seed))
        metrics.update(held_out)
        metrics["wall_time_s"] = time.perf_counter() - wall_start
        write_outputs(
            output_dir, script_args, training_args, model_args, metrics, rows, trainer.state.log_history
        )
        if push_to_hub:
            push_run(output_dir, training_args)
    trainer.accelerator.wait_for_everyone()
    reset_accelerate_state()
    return metrics


def evaluate_pairs(
    model, tokenizer, test, script_args: RewardScriptArguments, seed: int
) -> tuple[list[dict], dict]:
    """Score held-out pairs (pairwise accuracy, mean margin) and, on the built-in task, the rank correlation with
    the gold judge over every answer style of each held-out question."""
    n = len(test) if script_args.eval_pairs is None else min(script_args.eval_pairs, len(test))
    test = test.select(range(n))
    pad = tokenizer.pad_token_id
    chosen = score_sequences(model, test["chosen_ids"], pad, script_args.eval_score_batch_size)
    rejected = score_sequences(model, test["rejected_ids"], pad, script_args.eval_score_batch_size)
    margins = [c - r for c, r in zip(chosen, rejected, strict=True)]
    metrics = {
        "pairwise_accuracy": pairwise_accuracy(chosen, rejected),
        "mean_margin": sum(margins) / max(len(margins), 1),
        # the Bradley-Terry loss the trainer minimises (without its centring term), on held-out pairs
        "eval_loss": sum(max(-m, 0.0) + math.log1p(math.exp(-abs(m))) for m in margins)
        / max(len(margins), 1),
        "mean_reward_chosen": sum(chosen) / max(n, 1),
        "mean_reward_rejected": sum(rejected) / max(n, 1),
        "eval_pairs": n,
    }
    rows = [
        {
            "prompt": prompt_text(p),
            "chosen": c[-1]["content"],
            "rejected": r[-1]["content"],
            "reward_chosen": rc,
            "reward_rejected": rr,
        }
        for p, c, r, rc, rr in zip(
            test["prompt"], test["chosen"], test["rejected"], chosen, rejected, strict=True
        )
    ]
    if script_args.dataset_name == "builtin":
        # every answer style of each held-out question, ranked by the model vs by the judge: unlike pairwise
        # accuracy this sees how the model orders answers the pairs never set against each other
        sets = answer_sets(script_args.dataset_test_split, script_args.task_seed, **script_args.task_kwargs())
        metrics["gold_rank_correlation"] = gold_rank_correlation(
            model, tokenizer, sets, script_args.eval_score_batch_size
        )
        metrics["gold_answer_sets"] = len(sets)
    print(
        f"reward: pairwise accuracy {metrics['pairwise_accuracy']:.3f}, mean margin {metrics['mean_margin']:.3f} "
        f"on {n} held-out pairs"
        + (
            f", rank correlation with the gold judge {metrics['gold_rank_correlation']:.3f}"
            if "gold_rank_correlation" in metrics
            else ""
        )
    )
    return rows, metrics


def write_outputs(output_dir, script_args, training_args, model_args, metrics, rows, log_history) -> None:
    """Plots, scored pairs, model card, and metrics.json last (which marks the run finished)."""
    plot_histogram(
        output_dir / "rewards.png",
        {"chosen": [r["reward_chosen"] for r in rows], "rejected": [r["reward_rejected"] for r in rows]},
        title=f"reward on held-out pairs (pairwise accuracy {metrics['pairwise_accuracy']:.3f})",
        xlabel="reward (logit)",
    )
    plot_curves(
        output_dir / "loss.png",
        curves(log_history, {"loss": "train", "eval_loss": "held-out"}),
        title="reward model loss (-log sigmoid(r_chosen - r_rejected))",
        ylabel="loss",
    )
    from rlhf.evaluation import write_jsonl

    write_jsonl(output_dir / "pairs.jsonl", rows)
    table = markdown_table(
        rows[: script_args.card_samples], ["prompt", "chosen", "reward_chosen", "rejected", "reward_rejected"]
    )
    write_model_card(
        output_dir,
        stage="reward",
        description=(
            f"A reward model (LoRA adapter, and `merged/`: the full `AutoModelForSequenceClassification`) trained "
            f"from `{model_args.model_name_or_path}` on `{script_args.dataset_name}` with TRL's `RewardTrainer`."
            f"\n\n## Held-out accuracy (`{metrics['eval_split']}` split)\n\n{metrics.get('verdict', '')}"
            f"\n\n## Held-out pairs\n\n{table}"
        ),
        base_model=model_args.model_name_or_path,
        datasets=hub_datasets(script_args.dataset_name),
        metrics=metrics,
        config=config_to_dict(script_args, training_args, model_args),
        tags=["trl", "reward-model", "lora"] if model_args.use_peft else ["trl", "reward-model"],
        library_name="peft" if model_args.use_peft else "transformers",  # what the top level holds
    )
    write_metrics(output_dir, metrics)


def cli(argv=None):
    return run_cli(main, (RewardScriptArguments, RewardConfig, ModelConfig), "rlhf reward", argv)


if __name__ == "__main__":
    cli()
