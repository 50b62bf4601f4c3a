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

from dataclasses import dataclass, field

import trl
from trl import ModelConfig, get_peft_config

from rlhf import stages
from rlhf.config import run_cli
from rlhf.models import load_reward_model, save_merged
from rlhf.preference_eval import (
    evaluate_pairs,
    fit_pairs,
    held_out_report,
    tokenize_pairs,
    write_pair_outputs,
)
from rlhf.runs import stage_run


@dataclass
class RewardScriptArguments(stages.StageArguments):
    """
    What the reward stage adds to TRL's `RewardConfig`, `ModelConfig` and `rlhf.stages.StageArguments` (the
    dataset, tokenizer, model card, merged model and overwriting): how the held-out pairs are scored.

    Args:
        eval_pairs (`int` or `None`, *optional*, defaults to `None`):
            Held-out pairs scored after training for accuracy, margin and the histogram, and on the built-in
            task at most as many answer sets for the rank correlation (`None`: all of them).
        eval_score_batch_size (`int`, *optional*, defaults to `64`):
            Sequences per forward pass in that evaluation.
        eval_baselines (`bool`, *optional*, defaults to `True`):
            Score the held-out pairs with the base model's mean log-probability per answer token too (loads
            `model_name_or_path` as a causal LM once more); "the longer answer wins" is always measured.
    """

    eval_pairs: int | None = field(
        default=None,
        metadata={"help": "Held-out pairs (and built-in answer sets) scored after training (None: all)."},
    )
    eval_score_batch_size: int = field(
        default=64, metadata={"help": "Sequences per forward pass when scoring."}
    )
    eval_baselines: bool = field(
        default=True, metadata={"help": "Also score held-out pairs by the base model's mean log-probability."}
    )


@dataclass
class RewardConfig(stages.AutoBF16, trl.RewardConfig):
    pass


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
    with stage_run("reward", script_args, training_args, model_args) as run:
        tokenizer, data = stages.load_inputs(run, script_args, training_args, model_args, "preference")
        # too-long pairs lose prompt tokens from the left, so TRL drops none
        with run.state.main_process_first():
            train, fit = fit_pairs(
                tokenize_pairs(data["train"], tokenizer), training_args.max_length, "train"
            )
            test, fit_test = fit_pairs(
                tokenize_pairs(data["test"], tokenizer), training_args.max_length, "eval"
            )
        model = load_reward_model(
            model_args.model_name_or_path, dtype=model_args.dtype, gguf_file=script_args.gguf_file,
            trust_remote_code=training_args.trust_remote_code, revision=model_args.model_revision,
            pad_token_id=tokenizer.pad_token_id,
        )  # fmt: skip
        trainer = trl.RewardTrainer(
            model=model, args=training_args, train_dataset=train, eval_dataset=test,
            processing_class=tokenizer, peft_config=reward_peft_config(model_args),
        )  # fmt: skip
        run.write_config()  # after reward_peft_config: lora_task_type is SEQ_CLS
        metrics, _ = stages.train_and_save(trainer, run, evaluate=False)  # held-out pairs are scored below
        metrics.update(
            train_accuracy=stages.last_logged(trainer.state.log_history, "accuracy"), **fit, **fit_test
        )
        metrics.update(script_args.data_metrics(), eval_split=script_args.dataset_test_split)
        if run.is_main_process:
            # without accelerate's mixed-precision forward: scores in the saved model's own precision
            model = trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)
            if script_args.save_merged:
                save_merged(model, tokenizer, run.output_dir / "merged")
            rows, held_out = evaluate_pairs(model, tokenizer, test, script_args)
            held_out.update(
                held_out_report(rows, test, tokenizer, script_args, model_args, training_args.seed)
            )
            metrics.update(held_out)
            log = trainer.state.log_history
            table = write_pair_outputs(run.output_dir, rows, metrics, log, script_args.card_samples)
            run.finish(
                metrics,
                description=(
                    "A reward model (LoRA adapter, and `merged/`: the full `AutoModelForSequenceClassification`) "
                    f"trained from `{model_args.model_name_or_path}` on `{script_args.dataset_name}` with TRL's "
                    f"`RewardTrainer`.\n\n## Held-out accuracy (`{metrics['eval_split']}` split)\n\n"
                    f"{metrics.get('verdict', '')}\n\n## Held-out pairs\n\n{table}"
                ),
                tags=["trl", "reward-model"],
            )
    return metrics


def cli(argv=None):
    return run_cli(main, (RewardScriptArguments, RewardConfig, ModelConfig), "rlhf reward", argv)


if __name__ == "__main__":
    cli()
