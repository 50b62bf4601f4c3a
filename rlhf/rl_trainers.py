"""TRL's RL trainers as the RL stage builds them: their configs with the stage's extra fields, the reward
function RLOO and GRPO read the reward model through, and `build_trainer`.

PPO gets the reward model itself (``trl.experimental.ppo.PPOTrainer``: LoRA on the policy, so the reference is
the policy with the adapter off, ``ref_model=None``; the value model starts from the reward model). RLOO and
GRPO get `RewardModelScorer`, which reads the reward model at the token PPO reads it.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field

# trl 1.12 is pinned because it is the last release with PPOTrainer (DESIGN.md); its "experimental" notice
# tells nothing a user of this stage can act on.
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

import trl
from trl.experimental.ppo import PPOConfig as TRLPPOConfig
from trl.experimental.ppo import PPOTrainer

from rlhf.config import ConfigError
from rlhf.dataset_formats import prompt_ids
from rlhf.models import load_causal_lm
from rlhf.scoring import score_sequences
from rlhf.shared_base import RLModels
from rlhf.stages import CHAT_TEMPLATE_HELP, AutoBF16, check_model_path


@dataclass
class PPOConfig(AutoBF16, TRLPPOConfig):
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow custom model code from the Hub."})
    chat_template_path: str | None = field(default=None, metadata={"help": CHAT_TEMPLATE_HELP})
    # TRL's defaults name a Hub model (EleutherAI/pythia-160m): a missing path must stop the stage instead, and
    # the stage sets sft_model_path to model_name_or_path (the policy it trains), so config.yaml says so
    reward_model_path: str | None = field(
        default=None, metadata={"help": "The reward model (a directory or Hub id)."}
    )
    sft_model_path: str | None = field(
        default=None, metadata={"help": "Set by the stage: model_name_or_path."}
    )


@dataclass
class RLOOConfig(AutoBF16, trl.RLOOConfig):
    reward_model_path: str | None = field(
        default=None, metadata={"help": "The reward model (a directory or Hub id)."}
    )
    chat_template_path: str | None = field(default=None, metadata={"help": CHAT_TEMPLATE_HELP})

    def __post_init__(self):
        _settle_generation_batch(self, super().__post_init__)


@dataclass
class GRPOConfig(AutoBF16, trl.GRPOConfig):
    reward_model_path: str | None = field(
        default=None, metadata={"help": "The reward model (a directory or Hub id)."}
    )
    chat_template_path: str | None = field(default=None, metadata={"help": CHAT_TEMPLATE_HELP})

    def __post_init__(self):
        _settle_generation_batch(self, super().__post_init__)


def _settle_generation_batch(config, post_init) -> None:
    """Run TRL's ``__post_init__`` on a config that may hold both ``generation_batch_size`` and
    ``steps_per_generation``, as a run's config.yaml does (one given, the other derived from it). TRL refuses the
    pair, so the batch is derived again from ``steps_per_generation``, and must come out as written."""
    written = config.generation_batch_size if config.steps_per_generation is not None else None
    if written is not None:
        config.generation_batch_size = None
    post_init()
    if written is not None and written != config.generation_batch_size:
        raise ValueError(
            f"generation_batch_size {written} disagrees with steps_per_generation {config.steps_per_generation} "
            f"(= {config.generation_batch_size} prompts per generation on this many processes); set only one"
        )


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
    """The reward model's path; a missing one is the user's mistake."""
    if not training_args.reward_model_path:
        raise ConfigError("set reward_model_path (the reward stage's merged/ directory)")
    check_model_path("reward_model_path", training_args.reward_model_path)
    return training_args.reward_model_path


def build_trainer(script_args, training_args, model_args, tokenizer, data, models: RLModels):
    """The algorithm's TRL trainer on the prompts, with LoRA on the policy (`models` from `load_rl_models`)."""
    if script_args.algorithm == "ppo":
        # TRL's PPOConfig names the SFT policy; it is the one being trained (recorded in config.yaml, not loaded)
        training_args.sft_model_path = model_args.model_name_or_path

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
