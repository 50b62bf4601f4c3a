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
greedily. The stage reports both policies' mean reward-model score, and with the built-in task their mean
gold-judge score and the gain with a paired bootstrap 95% interval; the KL of the RL policy to the SFT
policy on its own samples; a before/after table (model card and ``samples.jsonl``); ``reward.png`` and
``kl.png`` over training; the adapter and ``merged/`` (the policy for the pipeline).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

# trl 1.12 is pinned because it is the last release with PPOTrainer (DESIGN.md); its "experimental" notice
# tells nothing a user of this stage can act on.
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

import trl
from transformers import set_seed
from trl import ModelConfig
from trl.experimental.ppo import PPOConfig as TRLPPOConfig
from trl.experimental.ppo import PPOTrainer

from rlhf.config import ConfigError, config_to_dict, load_yaml_config, run_cli
from rlhf.datasets import DatasetArguments
from rlhf.evaluation import (
    bootstrap_ci,
    builtin_judge,
    decode_responses,
    generate_responses,
    gold_scores,
    kl_to_reference,
    markdown_table,
    mean,
    prompt_ids,
    prompt_text,
    reward_of_responses,
    score_sequences,
    write_jsonl,
)
from rlhf.models import auto_precision, load_causal_lm, load_tokenizer, save_merged
from rlhf.runs import plot_curves, prepare_output_dir, write_metrics, write_model_card
from rlhf.shared_base import RLModels, count_policy_parameters, load_rl_models, policy_adapter_only
from rlhf.stages import (
    curves,
    defer_hub_push,
    hub_datasets,
    push_run,
    reset_accelerate_state,
    restore_hub_push,
    start_run,
)

ALGORITHMS = ("ppo", "rloo", "grpo")


@dataclass
class RLScriptArguments(DatasetArguments):
    """
    Arguments of the RL stage besides the algorithm's TRL config and `ModelConfig` (plus the dataset fields of
    `rlhf.datasets.DatasetArguments`; the data is prompt-only, and preference or SFT data gives its prompts).

    Args:
        algorithm (`str`, *optional*, defaults to `"ppo"`):
            `"ppo"`, `"rloo"` or `"grpo"`; picks the trainer and which TRL config's keys the file may hold.
        tokenizer_name_or_path (`str` or `None`, *optional*, defaults to `None`):
            Tokenizer to use (`None`: the policy's own).
        gguf_file (`str` or `None`, *optional*, defaults to `None`):
            GGUF file inside `model_name_or_path` to load the policy from.
        value_model_path (`str` or `None`, *optional*, defaults to `None`):
            PPO's value model initialisation (`None`: the reward model, as in the InstructGPT recipe).
        share_base (`bool`, *optional*, defaults to `True`):
            One frozen base for policy, reference, value and reward (LoRA adapters) where that applies, else
            separate models; the log says which and why (`rlhf.shared_base`).
        eval_prompts (`int`, *optional*, defaults to `200`):
            Held-out prompts answered by the SFT and the RL policy after training (0: skip the evaluation).
        eval_max_new_tokens (`int` or `None`, *optional*, defaults to `None`):
            Longest answer in that evaluation (`None`: the algorithm's response length).
        eval_generation_batch_size (`int`, *optional*, defaults to `64`):
            Prompts per `generate` call in that evaluation.
        eval_do_sample (`bool`, *optional*, defaults to `False`):
            Sample the evaluation answers (at `eval_temperature`, same seed for both policies) instead of
            decoding greedily. RL optimises the reward of *sampled* answers; greedy decoding hides the flawed
            answers a policy still gives some of the time.
        eval_temperature (`float`, *optional*, defaults to `1.0`):
            Sampling temperature of that evaluation.
        kl_samples_per_prompt (`int`, *optional*, defaults to `1`):
            Sampled answers per held-out prompt for the KL estimate.
        bootstrap_resamples (`int`, *optional*, defaults to `10000`):
            Resamples of the paired bootstrap interval of the reward gain.
        card_samples (`int`, *optional*, defaults to `8`):
            Before/after answers shown in the model card (all go to `samples.jsonl`).
        save_merged (`bool`, *optional*, defaults to `True`):
            Also save the policy with the adapter merged in `output_dir/merged`.
        overwrite_output_dir (`bool`, *optional*, defaults to `False`):
            Replace a finished run in `output_dir`.
    """

    algorithm: str = field(
        default="ppo", metadata={"help": "ppo, rloo or grpo.", "choices": list(ALGORITHMS)}
    )
    tokenizer_name_or_path: str | None = field(
        default=None, metadata={"help": "Tokenizer (None: the policy's)."}
    )
    gguf_file: str | None = field(default=None, metadata={"help": "GGUF file inside model_name_or_path."})
    value_model_path: str | None = field(
        default=None, metadata={"help": "PPO value model initialisation (None: the reward model)."}
    )
    share_base: bool = field(
        default=True, metadata={"help": "One frozen base with adapters where it applies."}
    )
    eval_prompts: int = field(
        default=200, metadata={"help": "Held-out prompts for the before/after evaluation."}
    )
    eval_max_new_tokens: int | None = field(
        default=None, metadata={"help": "Longest evaluation answer (None: the algorithm's response length)."}
    )
    eval_generation_batch_size: int = field(default=64, metadata={"help": "Prompts per generate call."})
    eval_do_sample: bool = field(default=False, metadata={"help": "Sample evaluation answers (else greedy)."})
    eval_temperature: float = field(default=1.0, metadata={"help": "Evaluation sampling temperature."})
    kl_samples_per_prompt: int = field(default=1, metadata={"help": "Sampled answers per prompt for the KL."})
    bootstrap_resamples: int = field(
        default=10_000, metadata={"help": "Resamples of the bootstrap interval."}
    )
    card_samples: int = field(default=8, metadata={"help": "Before/after answers shown in the model card."})
    save_merged: bool = field(
        default=True, metadata={"help": "Also save the merged policy in output_dir/merged."}
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Replace a finished run in output_dir."}
    )


_AUTO_BF16_HELP = "bf16 mixed precision (unset: on where the hardware has fast bf16)."
_DOC_PREFIX = (
    "TRL's `{name}`, plus `{extra}`; `bf16` left unset means: on where the hardware has fast bf16 (a bf16 GPU or "
    "a CPU with bf16 instructions), off elsewhere.\n\n"
)


@dataclass
class PPOConfig(TRLPPOConfig):
    __doc__ = _DOC_PREFIX.format(name="PPOConfig", extra="trust_remote_code, chat_template_path") + (
        TRLPPOConfig.__doc__ or ""
    )

    bf16: bool | None = field(default=None, metadata={"help": _AUTO_BF16_HELP})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow custom model code from the Hub."})
    chat_template_path: str | None = field(
        default=None, metadata={"help": "A .jinja chat template, or a tokenizer whose template to use."}
    )

    def __post_init__(self):
        auto_precision(self)
        super().__post_init__()


@dataclass
class RLOOConfig(trl.RLOOConfig):
    __doc__ = _DOC_PREFIX.format(name="RLOOConfig", extra="reward_model_path, chat_template_path") + (
        trl.RLOOConfig.__doc__ or ""
    )

    bf16: bool | None = field(default=None, metadata={"help": _AUTO_BF16_HELP})
    reward_model_path: str | None = field(
        default=None, metadata={"help": "The reward model (a directory or Hub id)."}
    )
    chat_template_path: str | None = field(
        default=None, metadata={"help": "A .jinja chat template, or a tokenizer whose template to use."}
    )

    def __post_init__(self):
        auto_precision(self)
        super().__post_init__()


@dataclass
class GRPOConfig(trl.GRPOConfig):
    __doc__ = _DOC_PREFIX.format(name="GRPOConfig", extra="reward_model_path, chat_template_path") + (
        trl.GRPOConfig.__doc__ or ""
    )

    bf16: bool | None = field(default=None, metadata={"help": _AUTO_BF16_HELP})
    reward_model_path: str | None = field(
        default=None, metadata={"help": "The reward model (a directory or Hub id)."}
    )
    chat_template_path: str | None = field(
        default=None, metadata={"help": "A .jinja chat template, or a tokenizer whose template to use."}
    )

    def __post_init__(self):
        auto_precision(self)
        super().__post_init__()


CONFIGS = {"ppo": PPOConfig, "rloo": RLOOConfig, "grpo": GRPOConfig}


class RewardModelScorer:
    """A reward function for TRL's RLOO/GRPO trainers that reads a reward model exactly where PPO does.

    TRL's own reward-model path re-renders prompt + completion through the chat template (with the text after
    the end-of-turn token); this scores ``prompt ids + generated ids`` (up to and including EOS), the ids the
    reward stage trained on and PPO scores.
    """

    __name__ = "reward_model"

    def __init__(self, reward_model, tokenizer, batch_size: int = 64):
        self.model, self.tokenizer, self.batch_size = reward_model, tokenizer, batch_size

    def __call__(self, prompts, completions, completion_ids, **kwargs) -> list[float]:
        pad, eos = self.tokenizer.pad_token_id, self.tokenizer.eos_token_id
        sequences = [
            prompt_ids(self.tokenizer, p) + _up_to_eos(list(ids), eos, pad)
            for p, ids in zip(prompts, completion_ids, strict=True)
        ]
        return score_sequences(self.model, sequences, pad, self.batch_size)


def _up_to_eos(ids: list[int], eos: int | None, pad: int | None) -> list[int]:
    """Generated ids up to and including the first EOS (PPO's truncation); padding dropped when there is none."""
    if eos is not None and eos in ids:
        return ids[: ids.index(eos) + 1]
    return [t for t in ids if t != pad]


def response_length(training_args) -> int:
    """The longest answer the algorithm generates (tokens)."""
    if isinstance(training_args, TRLPPOConfig):
        return training_args.response_length
    return training_args.max_completion_length


def reward_model_path(training_args) -> str:
    path = getattr(training_args, "reward_model_path", None)
    if not path:
        raise ConfigError("set reward_model_path (the reward stage's merged/ directory)")
    return path


def build_trainer(script_args, training_args, model_args, tokenizer, data, models: RLModels):
    """The algorithm's TRL trainer on the prompts, with LoRA on the policy (`models` from `load_rl_models`)."""
    if script_args.algorithm == "ppo":
        training_args.sft_model_path = (
            model_args.model_name_or_path
        )  # recorded in config.yaml; not loaded again

        def tokenize(split):
            return split.map(
                lambda ex: {"input_ids": prompt_ids(tokenizer, ex["prompt"])},
                remove_columns=split.column_names,
                desc="Tokenizing prompts",
            )

        eval_rows = min(len(data["test"]), max(training_args.per_device_eval_batch_size, 1))
        with _mixed_precision_env(training_args):
            return PPOTrainer(
                args=training_args,
                processing_class=tokenizer,
                model=models.policy,
                ref_model=None if model_args.use_peft else load_causal_lm(model_args.model_name_or_path),
                reward_model=models.reward_model,
                value_model=models.value_model,
                train_dataset=tokenize(data["train"]),
                eval_dataset=tokenize(data["test"].select(range(eval_rows))),
                peft_config=models.peft_config,
            )
    trainer_cls = trl.RLOOTrainer if script_args.algorithm == "rloo" else trl.GRPOTrainer
    trainer = trainer_cls(
        model=models.policy,
        reward_funcs=RewardModelScorer(models.reward_model, tokenizer),
        args=training_args,
        train_dataset=data["train"],
        processing_class=tokenizer,
        peft_config=models.peft_config,
    )
    # TRL moves reward *models* to the device itself; ours is wrapped in a function, so move it here.
    models.reward_model.to(trainer.accelerator.device)
    return trainer


@contextlib.contextmanager
def _mixed_precision_env(training_args):
    """Make PPOTrainer's own ``Accelerator()`` use the config's bf16/fp16.

    TRL's PPOTrainer builds ``Accelerator(gradient_accumulation_steps=...)`` without a precision, so it reads
    ``ACCELERATE_MIXED_PRECISION``; transformers 5 no longer sets that from ``bf16: true``, which would
    otherwise train in fp32 with the setting silently ignored (``accelerate launch`` sets it from its config).
    """
    wanted = "bf16" if training_args.bf16 else "fp16" if training_args.fp16 else None
    before = os.environ.get("ACCELERATE_MIXED_PRECISION")
    if wanted:
        os.environ["ACCELERATE_MIXED_PRECISION"] = wanted
    try:
        yield
    finally:
        if wanted:
            if before is None:
                os.environ.pop("ACCELERATE_MIXED_PRECISION", None)
            else:
                os.environ["ACCELERATE_MIXED_PRECISION"] = before


def main(script_args: RLScriptArguments, training_args, model_args: ModelConfig) -> dict:
    """Run the RL algorithm, save the policy, compare it with the SFT policy; returns metrics.json's content."""
    wall_start = time.perf_counter()
    if not isinstance(training_args, CONFIGS[script_args.algorithm]):
        raise ConfigError(
            f"algorithm '{script_args.algorithm}' needs a {CONFIGS[script_args.algorithm].__name__}"
        )
    if not model_args.model_name_or_path:
        raise ConfigError("set model_name_or_path (the SFT stage's merged/ directory)")
    reward_model_path(training_args)  # fails now, not after the data is loaded
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
        padding_side="left",  # prompts are batched for generation
    )
    data = script_args.load("prompts", training_args.seed)
    output_dir = start_run(  # the input is usable: now the run directory gets its config
        training_args.output_dir, script_args.overwrite_output_dir, state.is_main_process,
        script_args, training_args, model_args,
    )  # fmt: skip
    set_seed(training_args.seed)
    models = load_rl_models(script_args, training_args, model_args, tokenizer)
    state.print(f"{script_args.algorithm}: {models.note}")
    reward_model = models.reward_model
    push_to_hub = defer_hub_push(training_args)  # pushed once, finished, by push_run below
    trainer = build_trainer(script_args, training_args, model_args, tokenizer, data, models)
    policy = trainer.accelerator.unwrap_model(trainer.model)
    policy = getattr(policy, "policy", policy)  # PPO wraps policy and value model together
    trainable, total = count_policy_parameters(policy)
    trainer.accelerator.print(
        f"{script_args.algorithm}: {len(data['train'])} train / {len(data['test'])} held-out prompts; "
        f"policy {trainable:,} of {total:,} parameters trainable"
    )
    train_start = time.perf_counter()
    trainer.train()
    train_time = time.perf_counter() - train_start
    with policy_adapter_only(policy):
        trainer.save_model(str(output_dir))  # the policy's adapter and the tokenizer
    restore_hub_push(training_args, push_to_hub)

    log = trainer.state.log_history
    metrics = {
        "algorithm": script_args.algorithm,
        "steps": trainer.state.global_step,
        "train_runtime_s": train_time,
        "trainable_parameters": trainable,
        "total_parameters": total,
        "num_processes": trainer.accelerator.num_processes,
        "bf16": bool(training_args.bf16),
        "shared_base": models.shared,
    }
    if trainer.accelerator.is_main_process:
        if script_args.save_merged:
            save_merged(policy, tokenizer, output_dir / "merged")
        reference = sft_reference(policy, model_args)
        samples, compared = compare_policies(
            policy, reference, reward_model, tokenizer, data["test"], script_args, training_args
        )
        metrics.update(compared)
        metrics["wall_time_s"] = time.perf_counter() - wall_start
        write_outputs(output_dir, script_args, training_args, model_args, metrics, samples, log)
        if push_to_hub:
            push_run(output_dir, training_args)
    trainer.accelerator.wait_for_everyone()
    reset_accelerate_state()
    return metrics


def sft_reference(policy, model_args: ModelConfig):
    """The SFT policy to compare with: None for a PEFT policy (its adapter is switched off), else a fresh load."""
    if hasattr(policy, "disable_adapter"):
        return None
    return load_causal_lm(model_args.model_name_or_path, dtype=model_args.dtype)


def _responses(model, tokenizer, prompts, script_args, training_args, adapter: bool):
    kwargs = dict(
        max_new_tokens=script_args.eval_max_new_tokens or response_length(training_args),
        batch_size=script_args.eval_generation_batch_size,
        do_sample=script_args.eval_do_sample,
        temperature=script_args.eval_temperature,
        seed=training_args.seed,
    )
    if adapter or not hasattr(model, "disable_adapter"):
        return generate_responses(model, tokenizer, prompts, **kwargs)
    with model.disable_adapter():
        return generate_responses(model, tokenizer, prompts, **kwargs)


def compare_policies(policy, reference, reward_model, tokenizer, test, script_args, training_args):
    """Answers of the SFT and RL policies to the same held-out prompts (greedy, or sampled with the same seed),
    scored; KL of RL to SFT."""
    n = min(script_args.eval_prompts, len(test))
    if n == 0:
        return [], {}
    prompts = test.select(range(n))["prompt"]
    start = time.perf_counter()
    rl = _responses(policy, tokenizer, prompts, script_args, training_args, adapter=True)
    if reference is None:
        sft = _responses(policy, tokenizer, prompts, script_args, training_args, adapter=False)
    else:
        sft = _responses(reference, tokenizer, prompts, script_args, training_args, adapter=True)
    rl_text, sft_text = decode_responses(tokenizer, rl), decode_responses(tokenizer, sft)
    rm_rl = reward_of_responses(reward_model, tokenizer, prompts, rl)
    rm_sft = reward_of_responses(reward_model, tokenizer, prompts, sft)
    gain, low, high = bootstrap_ci(
        rm_rl, rm_sft, n_resamples=script_args.bootstrap_resamples, seed=training_args.seed
    )
    metrics = {
        "eval_prompts": n,
        "reward_model_score_sft": mean(rm_sft),
        "reward_model_score_policy": mean(rm_rl),
        "reward_model_gain": gain,
        "reward_model_gain_ci_low": low,
        "reward_model_gain_ci_high": high,
        "eos_rate_policy": mean([float(tokenizer.eos_token_id in r) for r in rl]),
        "response_tokens_policy": mean([len(r) for r in rl]),
        "response_tokens_sft": mean([len(r) for r in sft]),
    }
    samples = [
        {"prompt": prompt_text(p), "sft": s, "rl": r, "reward_model_sft": a, "reward_model_rl": b}
        for p, s, r, a, b in zip(prompts, sft_text, rl_text, rm_sft, rm_rl, strict=True)
    ]
    if script_args.dataset_name == "builtin":
        judge = builtin_judge(script_args.task_seed, script_args.task_kwargs())
        gold_rl, gold_sft = gold_scores(judge, prompts, rl_text), gold_scores(judge, prompts, sft_text)
        gain, low, high = bootstrap_ci(
            gold_rl["score"],
            gold_sft["score"],
            groups=[judge.parse_question(p) for p in prompts],  # prompts about one fact move together
            n_resamples=script_args.bootstrap_resamples,
            seed=training_args.seed,
        )
        metrics.update(
            gold_reward_sft=mean(gold_sft["score"]),
            gold_reward_policy=mean(gold_rl["score"]),
            gold_reward_gain=gain,
            gold_reward_gain_ci_low=low,
            gold_reward_gain_ci_high=high,
            answer_accuracy_sft=mean(gold_sft["correct"]),
            answer_accuracy_policy=mean(gold_rl["correct"]),
        )
        for sample, a, b in zip(samples, gold_sft["score"], gold_rl["score"], strict=True):
            sample.update(gold_sft=a, gold_rl=b)
    kl = kl_to_reference(
        policy, tokenizer, prompts, reference,
        max_new_tokens=script_args.eval_max_new_tokens or response_length(training_args),
        batch_size=script_args.eval_generation_batch_size,
        seed=training_args.seed,
        samples_per_prompt=script_args.kl_samples_per_prompt,
    )  # fmt: skip
    metrics["kl_to_sft"] = kl["kl"]
    metrics["eval_time_s"] = time.perf_counter() - start
    if "gold_reward_gain" in metrics:
        name, before, after, gain_key = (
            "gold reward",
            "gold_reward_sft",
            "gold_reward_policy",
            "gold_reward_gain",
        )
    else:
        name, before, after = "reward-model score", "reward_model_score_sft", "reward_model_score_policy"
        gain_key = "reward_model_gain"
    print(
        f"{script_args.algorithm}: {name} SFT {metrics[before]:.3f} -> RL {metrics[after]:.3f}, gain "
        f"{metrics[gain_key]:+.3f} (95% CI {metrics[gain_key + '_ci_low']:+.3f} .. "
        f"{metrics[gain_key + '_ci_high']:+.3f}); KL to SFT {metrics['kl_to_sft']:.3f} nats; {n} held-out prompts"
    )
    return samples, metrics


TRAINING_CURVES = {
    "ppo": ({"objective/scores": "reward model score"}, {"objective/kl": "KL to reference"}),
    "rloo": ({"reward": "reward model score"}, {"kl": "KL to reference"}),
    "grpo": ({"reward": "reward model score"}, {"kl": "KL to reference"}),
}


def write_outputs(output_dir: Path, script_args, training_args, model_args, metrics, samples, log) -> None:
    """Plots, before/after samples, model card, and metrics.json last (which marks the run finished)."""
    reward_keys, kl_keys = TRAINING_CURVES[script_args.algorithm]
    plot_curves(
        output_dir / "reward.png", curves(log, reward_keys), title=f"{script_args.algorithm}: reward of rollouts",
        ylabel="reward-model score",
    )  # fmt: skip
    plot_curves(
        output_dir / "kl.png", curves(log, kl_keys), title=f"{script_args.algorithm}: KL to the SFT policy",
        ylabel="KL (nats per response)" if script_args.algorithm == "ppo" else "KL (nats per token)",
    )  # fmt: skip
    if samples:
        write_jsonl(output_dir / "samples.jsonl", samples)
    columns = ["prompt", "sft", "rl"] + (
        ["gold_sft", "gold_rl"] if samples and "gold_rl" in samples[0] else []
    )
    columns += ["reward_model_sft", "reward_model_rl"]
    table = markdown_table(samples[: script_args.card_samples], columns) if samples else ""
    decoding = (
        f"sampled at temperature {script_args.eval_temperature} (same seed for both)"
        if script_args.eval_do_sample
        else "greedy"
    )
    write_model_card(
        output_dir,
        stage="ppo",
        description=(
            f"A LoRA adapter (and `merged/`, the full policy) trained with {script_args.algorithm.upper()} from "
            f"`{model_args.model_name_or_path}` against the reward model `{reward_model_path(training_args)}` "
            f"on the prompts of `{script_args.dataset_name}` with TRL."
            + (
                f"\n\n## Answers before (SFT) and after ({script_args.algorithm.upper()}), held-out prompts, {decoding}\n\n{table}"
                if table
                else ""
            )
        ),
        base_model=model_args.model_name_or_path,
        datasets=hub_datasets(script_args.dataset_name),
        metrics=metrics,
        config=config_to_dict(script_args, training_args, model_args),
        tags=["trl", script_args.algorithm, "rlhf-policy"] + (["lora"] if model_args.use_peft else []),
        library_name="peft" if model_args.use_peft else "transformers",  # what the top level holds
    )
    write_metrics(output_dir, metrics)


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
