"""DPO stage: optimise the SFT policy on preference pairs directly with TRL's ``DPOTrainer``, with LoRA.

    rlhf dpo --config configs/quickstart/dpo.yaml [--key value ...]
    rlhf dpo --config configs/quickstart/dpo.yaml --dataset_name pairs.jsonl --output_dir runs/my-dpo

No reward model and no sampling during training: DPO fits the policy's log-probability ratio to the reference
(``beta`` x log pi/pi_ref, the "implicit reward") so that chosen answers beat rejected ones. With LoRA the
reference is the same network with the adapter off (TRL does this when ``ref_model`` is None). The data is any
preference dataset the reward stage reads (``prompt``/``chosen``/``rejected``, HH-RLHF, PandaLM, ...).

After training the SFT policy (adapter off) and the DPO policy answer the same held-out prompts and are compared
as the RL stage compares its policy (`rlhf.policy_eval`): the gold judge's gain with a 95% interval resampling
facts on the built-in task, a reward model's scores when ``reward_model_path`` is set, and the KL to the SFT
policy. ``metrics.json`` also holds DPO's own held-out figures: the implicit reward's pairwise accuracy and
margin and the held-out loss. The run directory gets the adapter, ``merged/``, ``loss.png``, ``rewards.png``
(implicit rewards over training), ``samples.jsonl`` and a model card.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import trl
from trl import ModelConfig, get_peft_config

from rlhf import stages
from rlhf.config import run_cli
from rlhf.models import load_reward_model, save_merged
from rlhf.policy_eval import (
    PolicyEvalArguments,
    compare_policies,
    sft_reference,
    unique_prompts,
    write_comparison,
)
from rlhf.reporting import plot_curves
from rlhf.runs import stage_run


@dataclass
class DPOScriptArguments(PolicyEvalArguments, stages.StageArguments):
    """
    Arguments of the DPO stage besides TRL's `DPOConfig` and `ModelConfig` (plus those of
    `rlhf.stages.StageArguments` and of `rlhf.policy_eval.PolicyEvalArguments`; the data is preference pairs).

    Args:
        reward_model_path (`str` or `None`, *optional*, defaults to `None`):
            A reward model (e.g. the reward stage's `merged/`) that also scores both policies' answers after
            training, as in the RL stage; it plays no part in training.
    """

    reward_model_path: str | None = field(
        default=None, metadata={"help": "A reward model that also scores both policies after training."}
    )


@dataclass
class DPOConfig(stages.AutoBF16, trl.DPOConfig):
    chat_template_path: str | None = field(default=None, metadata={"help": stages.CHAT_TEMPLATE_HELP})


# Implicit rewards the DPO trainer logs (beta x log-probability ratio to the reference, nats).
REWARD_CURVES = {"rewards/chosen": "chosen", "rewards/rejected": "rejected", "rewards/margins": "margin"}


def main(script_args: DPOScriptArguments, training_args: DPOConfig, model_args: ModelConfig) -> dict:
    """Train the policy with DPO, save the adapter and the merged model, compare it with the SFT policy;
    returns the metrics written to metrics.json."""
    stages.check_model_path("reward_model_path", script_args.reward_model_path)  # before training, not after
    with stage_run("dpo", script_args, training_args, model_args) as run:
        tokenizer, data = stages.load_inputs(run, script_args, training_args, model_args, "preference")
        trainer = trl.DPOTrainer(
            stages.causal_lm(script_args, training_args, model_args), args=training_args,
            train_dataset=data["train"], eval_dataset=data["test"], processing_class=tokenizer,
            peft_config=get_peft_config(model_args),  # ref_model None: the reference is the adapter switched off
        )  # fmt: skip
        run.write_config()
        metrics, held_out = stages.train_and_save(trainer, run)
        metrics.update(
            eval_loss=held_out["eval_loss"], eval_pairs=len(data["test"]), **script_args.data_metrics(),
            eval_reward_accuracy=held_out["eval_rewards/accuracies"],  # implicit reward, held-out pairs
            eval_reward_margin=held_out["eval_rewards/margins"], eval_split=script_args.dataset_test_split,
        )  # fmt: skip
        if run.is_main_process:
            policy = trainer.accelerator.unwrap_model(trainer.model)
            policy.generation_config.eos_token_id = tokenizer.eos_token_id
            policy.generation_config.pad_token_id = tokenizer.pad_token_id
            if script_args.save_merged:
                save_merged(policy, tokenizer, run.output_dir / "merged")
            reward_model = script_args.reward_model_path and load_reward_model(
                script_args.reward_model_path, dtype=model_args.dtype, pad_token_id=tokenizer.pad_token_id
            )
            samples, compared = compare_policies(
                policy, sft_reference(policy, model_args.model_name_or_path, model_args.dtype), tokenizer,
                unique_prompts(data["test"]), script_args, seed=training_args.seed, reward_model=reward_model or None,
                max_new_tokens=script_args.eval_max_new_tokens or 48, name="dpo",
            )  # fmt: skip
            metrics.update(compared)
            log = trainer.state.log_history
            plot_curves(
                run.output_dir / "loss.png", stages.curves(log, {"loss": "train", "eval_loss": "held-out"}),
                title="DPO loss (-log sigmoid of the implicit reward margin)", ylabel="loss",
            )  # fmt: skip
            plot_curves(
                run.output_dir / "rewards.png", stages.curves(log, REWARD_CURVES),
                title="DPO implicit rewards (train)", ylabel="beta x log(pi / pi_ref), nats",
            )  # fmt: skip
            table = write_comparison(
                run.output_dir, samples, script_args, "dpo", script_args.card_samples, "DPO"
            )
            description = (
                f"A LoRA adapter (and `merged/`, the full policy) trained with DPO (TRL's `DPOTrainer`, beta "
                f"{training_args.beta}) from `{model_args.model_name_or_path}` on the preference pairs of "
                f"`{script_args.dataset_name}`; the reference policy is the model with the adapter off.{table}"
            )
            run.finish(metrics, description=description, tags=["trl", "dpo", "rlhf-policy"])
    return metrics


def cli(argv=None):
    return run_cli(main, (DPOScriptArguments, DPOConfig, ModelConfig), "rlhf dpo", argv)


if __name__ == "__main__":
    cli()
