"""RL stage: optimise the SFT policy against the reward model with PPO, RLOO or GRPO from TRL, with LoRA.

    rlhf ppo --config configs/quickstart/ppo.yaml [--key value ...]
    rlhf ppo --config configs/quickstart/ppo.yaml --algorithm grpo ...   # needs GRPO's own keys, see below

``algorithm: ppo`` (the default) runs ``trl.experimental.ppo.PPOTrainer``: LoRA on the policy, so the reference
policy is the same network with the adapter disabled (``ref_model=None``); the value model starts from the
reward model. With ``share_base`` (on; see `rlhf.shared_base`) the value and reward models are adapters on the
policy's own frozen base, else separate models (the reward stage's ``merged/``). Its options are `PPOConfig`'s,
under their TRL names: ``kl_coef``, ``response_length``, ``stop_token``, ``missing_eos_penalty``, ``whiten_rewards``, ...

``algorithm: rloo`` / ``grpo`` run TRL's ``RLOOTrainer`` / ``GRPOTrainer`` on the same prompts with the same
reward model (``reward_model_path``), read at the same token as PPO reads it; their options are
`RLOOConfig`'s / `GRPOConfig`'s (``beta`` is their KL coefficient, ``max_completion_length`` their response
length, ``num_generations`` the group size). The dataclass of TRL options follows the algorithm, so a
config file holds one algorithm's keys.

After training, the SFT policy (adapter off) and the RL policy (adapter on) answer the same held-out prompts
(greedy, or sampled with one seed: ``eval_do_sample``) and are compared by `rlhf.policy_eval`, as the DPO stage
compares its policy: both policies' mean reward-model score, and with the built-in task their mean gold-judge
score and the gain with a paired bootstrap 95% interval (facts resampled); the KL of the RL policy to the SFT
policy on its own samples; a before/after table (model card and ``samples.jsonl``); ``reward.png`` and
``kl.png`` over training; the adapter and ``merged/`` (the policy for the pipeline).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

from trl import ModelConfig

from rlhf import stages
from rlhf.config import ConfigError, load_yaml_config, run_cli
from rlhf.host_memory import RL_RELEASE_MEMORY_S
from rlhf.models import save_merged
from rlhf.policy_eval import PolicyEvalArguments, compare_policies, sft_reference, write_comparison
from rlhf.reporting import plot_curves
from rlhf.rl_trainers import (  # noqa: F401  (RLOOConfig, GRPOConfig: imported from here too)
    CONFIGS,
    GRPOConfig,
    PPOConfig,
    RewardModelScorer,
    RLOOConfig,
    build_trainer,
    response_length,
    reward_model_path,
)
from rlhf.runs import stage_run
from rlhf.shared_base import count_policy_parameters, load_rl_models, policy_adapter_only

ALGORITHMS = ("ppo", "rloo", "grpo")


@dataclass
class RLScriptArguments(PolicyEvalArguments, stages.StageArguments):
    """
    Arguments of the RL stage besides the algorithm's TRL config and `ModelConfig` (plus those of
    `rlhf.stages.StageArguments` and of `rlhf.policy_eval.PolicyEvalArguments`, the comparison with the SFT
    policy; the data is prompt-only, and preference or SFT data gives its prompts).

    Args:
        algorithm (`str`, *optional*, defaults to `"ppo"`):
            `"ppo"`, `"rloo"` or `"grpo"`; picks the trainer and which TRL config's keys the file may hold.
        value_model_path (`str` or `None`, *optional*, defaults to `None`):
            PPO's value model initialisation (`None`: the reward model, as in the InstructGPT recipe).
        share_base (`bool`, *optional*, defaults to `True`):
            One frozen base for policy, reference, value and reward (LoRA adapters) where that applies, else
            separate models; the log says which and why (`rlhf.shared_base`).
        release_memory_s (`float`, *optional*, defaults to `0.5`):
            As in `rlhf.stages.StageArguments`, on by default here: PPO's peak memory on a CPU is mostly freed
            memory the C allocator keeps (`rlhf.host_memory`).
    """

    release_memory_s: float = field(
        default=RL_RELEASE_MEMORY_S,
        metadata={"help": "Seconds between handing freed host memory back to the system (0: never)."},
    )
    algorithm: str = field(
        default="ppo", metadata={"help": "ppo, rloo or grpo.", "choices": list(ALGORITHMS)}
    )
    value_model_path: str | None = field(
        default=None, metadata={"help": "PPO value model initialisation (None: the reward model)."}
    )
    share_base: bool = field(
        default=True, metadata={"help": "One frozen base with adapters where it applies."}
    )


# Training curves of each algorithm's log: (reward-model score, KL to the reference).
TRAINING_CURVES = {
    "ppo": ({"objective/scores": "reward model score"}, {"objective/kl": "KL to reference"}),
    "rloo": ({"reward": "reward model score"}, {"kl": "KL to reference"}),
    "grpo": ({"reward": "reward model score"}, {"kl": "KL to reference"}),
}


def main(script_args: RLScriptArguments, training_args, model_args: ModelConfig) -> dict:
    """Run the RL algorithm, save the policy, compare it with the SFT policy; returns metrics.json's content."""
    algorithm = script_args.algorithm
    if not isinstance(training_args, CONFIGS[algorithm]):
        raise ConfigError(f"algorithm '{algorithm}' needs a {CONFIGS[algorithm].__name__}")
    reward_model_path(training_args)  # fails now, not after the data is loaded
    with stage_run("ppo", script_args, training_args, model_args) as run:
        # prompts are batched for generation: padded on the left
        tokenizer, data = stages.load_inputs(
            run, script_args, training_args, model_args, "prompts", padding_side="left"
        )
        models = load_rl_models(script_args, training_args, model_args, tokenizer)
        run.state.print(f"{algorithm}: {models.note}")
        trainer = build_trainer(script_args, training_args, model_args, tokenizer, data, models)
        run.write_config()  # after build_trainer: PPO's sft_model_path and batch sizes are settled
        policy = trainer.accelerator.unwrap_model(trainer.model)
        policy = getattr(policy, "policy", policy)  # PPO wraps policy and value model together
        parameters = count_policy_parameters(policy)
        trainer.accelerator.print(
            f"{algorithm}: {len(data['train'])} train / {len(data['test'])} held-out prompts; "
            f"policy {parameters[0]:,} of {parameters[1]:,} parameters trainable"
        )
        train_start = time.perf_counter()
        trainer.train()
        with policy_adapter_only(policy):
            trainer.save_model(str(run.output_dir))  # the policy's adapter and the tokenizer
        metrics = {"algorithm": algorithm, **stages.trainer_metrics(trainer, parameters=parameters)}
        metrics.update(train_runtime_s=time.perf_counter() - train_start, shared_base=models.shared)
        if run.is_main_process:
            if script_args.save_merged:
                save_merged(policy, tokenizer, run.output_dir / "merged")
            samples, compared = compare_policies(
                policy, sft_reference(policy, model_args.model_name_or_path, model_args.dtype), tokenizer,
                data["test"], script_args, seed=training_args.seed, reward_model=models.reward_model,
                max_new_tokens=script_args.eval_max_new_tokens or response_length(training_args),
            )  # fmt: skip
            metrics.update(compared)
            log, (reward_keys, kl_keys) = trainer.state.log_history, TRAINING_CURVES[algorithm]
            plot_curves(
                run.output_dir / "reward.png", stages.curves(log, reward_keys),
                title=f"{algorithm}: reward of rollouts", ylabel="reward-model score",
            )  # fmt: skip
            plot_curves(
                run.output_dir / "kl.png", stages.curves(log, kl_keys), title=f"{algorithm}: KL to the SFT policy",
                ylabel="KL (nats per response)" if algorithm == "ppo" else "KL (nats per token)",
            )  # fmt: skip
            table = write_comparison(
                run.output_dir, samples, script_args, "rl", script_args.card_samples, algorithm.upper()
            )
            description = (
                f"A LoRA adapter (and `merged/`, the full policy) trained with {algorithm.upper()} from "
                f"`{model_args.model_name_or_path}` against the reward model `{training_args.reward_model_path}` "
                f"on the prompts of `{script_args.dataset_name}` with TRL.{table}"
            )
            run.finish(metrics, description=description, tags=["trl", algorithm, "rlhf-policy"])
    return metrics


def _algorithm_of(argv: list[str]) -> str:
    """The algorithm a command line asks for: ``--algorithm X``, else the config file's, else ``ppo``."""
    for i, arg in enumerate(argv):
        if arg == "--algorithm" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--algorithm="):
            return arg.split("=", 1)[1]
    for i, arg in enumerate(argv):
        path = (
            argv[i + 1]
            if arg == "--config" and i + 1 < len(argv)
            else arg.split("=", 1)[1]
            if arg.startswith("--config=")
            else None
        )
        if path:
            try:
                return str(load_yaml_config(path).get("algorithm", "ppo"))
            except ConfigError:
                return "ppo"  # the parser reports the file's problem
    return "ppo"


def cli(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    config_cls = CONFIGS.get(_algorithm_of(argv), PPOConfig)  # an unknown algorithm fails in the parser
    return run_cli(main, (RLScriptArguments, config_cls, ModelConfig), "rlhf ppo", argv)


if __name__ == "__main__":
    cli()
