"""What the fine-tuning stages (SFT, reward, RL, DPO) share besides the run lifecycle (`rlhf.runs.stage_run`):
their common arguments, TRL configs whose ``bf16`` follows the hardware, loading the tokenizer and model those
arguments name, and the figures every Trainer run reports."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlhf.config import ConfigError
from rlhf.datasets import DatasetArguments
from rlhf.models import auto_precision, count_parameters, load_causal_lm, load_tokenizer
from rlhf.runs import reset_accelerate_state  # noqa: F401  (imported from here by tests and notebooks)


@dataclass
class StageArguments(DatasetArguments):
    """
    Arguments every fine-tuning stage has besides its TRL config and `ModelConfig` (plus the dataset fields of
    `rlhf.datasets.DatasetArguments`).

    Args:
        tokenizer_name_or_path (`str` or `None`, *optional*, defaults to `None`):
            Tokenizer to use (`None`: the model's own).
        gguf_file (`str` or `None`, *optional*, defaults to `None`):
            GGUF file inside `model_name_or_path` to load (or give the `.gguf` path as `model_name_or_path`).
        card_samples (`int`, *optional*, defaults to `8`):
            Held-out examples shown in the model card (all of them go to the run's `.jsonl` file).
        save_merged (`bool`, *optional*, defaults to `True`):
            Also save the model with the adapter merged in `output_dir/merged` (what the next stages load).
        overwrite_output_dir (`bool`, *optional*, defaults to `False`):
            Replace a finished run in `output_dir`.
        release_memory_s (`float`, *optional*, defaults to `0`):
            Every this many seconds while the stage runs, hand the memory the C allocator holds free back to the
            system (`rlhf.host_memory`; glibc only; `0`: never; the RL stage's default is `0.5`). On a CPU it
            lowered PPO's peak resident memory by a third (fp32) to a tenth (bf16) for up to ~5% of its time.
    """

    tokenizer_name_or_path: str | None = field(
        default=None, metadata={"help": "Tokenizer (None: the model's)."}
    )
    gguf_file: str | None = field(default=None, metadata={"help": "GGUF file inside model_name_or_path."})
    card_samples: int = field(default=8, metadata={"help": "Held-out examples shown in the model card."})
    save_merged: bool = field(
        default=True, metadata={"help": "Also save the merged model in output_dir/merged."}
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Replace a finished run in output_dir."}
    )
    release_memory_s: float = field(
        default=0.0,
        metadata={"help": "Seconds between handing freed host memory back to the system (0: never)."},
    )


CHAT_TEMPLATE_HELP = "A .jinja chat template, or a tokenizer whose template to use."


@dataclass
class AutoBF16:
    """Put first among the bases of a TRL config (``class SFTConfig(AutoBF16, trl.SFTConfig)``): ``bf16`` left
    unset means on where the hardware has fast bf16 (a bf16 GPU, or a CPU with bf16 instructions), off elsewhere.
    The subclass's docstring is the TRL config's, with that said first."""

    bf16: bool | None = field(
        default=None, metadata={"help": "bf16 mixed precision (unset: on where the hardware has fast bf16)."}
    )

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        trl_config = cls.__mro__[2] if cls.__mro__[1] is AutoBF16 else None
        if trl_config is not None and not cls.__dict__.get("__doc__"):
            inherited = {f.name for f in dataclasses.fields(trl_config)}
            extra = "".join(
                f", plus `{n}`" for n in cls.__dict__.get("__annotations__", {}) if n not in inherited
            )
            cls.__doc__ = (
                f"TRL's `{trl_config.__name__}`{extra}; `bf16` left unset means: on where the hardware has fast "
                "bf16 (a bf16 GPU or a CPU with bf16 instructions), off elsewhere.\n\n"
                + (trl_config.__doc__ or "")
            )

    def __post_init__(self):
        auto_precision(self)
        super().__post_init__()


def check_model_path(field_name: str, value: str | None) -> None:
    """Stop with one line when ``value`` names a local model that is not there: a path (absolute, relative with
    ``./``, or with more than the one ``/`` of a Hub id ``org/name``) that does not exist."""
    if not value or value.startswith("package:") or Path(value).expanduser().exists():
        return
    if value.startswith(("/", ".", "~")) or value.count("/") > 1:
        raise ConfigError(f"{field_name} '{value}': no such file or directory")


def tokenizer(script_args: StageArguments, training_args, model_args, **kwargs):
    """The tokenizer a stage's arguments name (``tokenizer_name_or_path``, else the model's), with a chat template."""
    field_name = "tokenizer_name_or_path" if script_args.tokenizer_name_or_path else "model_name_or_path"
    name = script_args.tokenizer_name_or_path or model_args.model_name_or_path
    check_model_path(field_name, name)
    try:
        return load_tokenizer(
            name,
            chat_template_path=training_args.chat_template_path,
            gguf_file=script_args.gguf_file,
            trust_remote_code=training_args.trust_remote_code,
            revision=model_args.model_revision,
            **kwargs,
        )
    except OSError as err:  # not on the Hub, or no network: the user's setting, not a bug
        raise ConfigError(
            f"{field_name} '{name}': cannot load a tokenizer ({str(err).splitlines()[0]})"
        ) from None


def causal_lm(script_args: StageArguments, training_args, model_args):
    """The causal LM ``model_name_or_path`` names, loaded as `ModelConfig` says (dtype, revision, attention)."""
    return load_causal_lm(
        model_args.model_name_or_path,
        dtype=model_args.dtype,
        gguf_file=script_args.gguf_file,
        trust_remote_code=training_args.trust_remote_code,
        revision=model_args.model_revision,
        attn_implementation=model_args.attn_implementation,
    )


def load_inputs(run, script_args: StageArguments, training_args, model_args, kind: str, **tokenizer_kwargs):
    """What a fine-tuning stage reads before it builds its trainer: ``(tokenizer, data)``, the tokenizer with a
    chat template and the ``train``/``test`` data of ``kind`` (`rlhf.datasets.DatasetArguments.load`).

    A user's mistake here (no model, a missing column, no chat template) stops the run before it writes
    anything. A held-out split carved here is saved into the run (``split/``, ``split.json``), so later stages
    and reruns read the same rows.
    """
    if not model_args.model_name_or_path:
        raise ConfigError(
            "set model_name_or_path (the model this stage starts from: a Hub id, a directory such as the "
            "previous stage's merged/, or a .gguf file)"
        )
    loaded = tokenizer(script_args, training_args, model_args, **tokenizer_kwargs)
    data = script_args.load(kind, training_args.seed)
    if run.is_main_process:
        script_args.save_split(run.output_dir)
    return loaded, data


def train_and_save(trainer, run, evaluate: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train a Trainer-based stage's model, score its held-out set (``evaluate``), save the model (the adapter,
    or the full model without LoRA) and the tokenizer into the run; returns (`trainer_metrics`, held-out
    metrics)."""
    parameters = count_parameters(trainer.model)
    trainer.accelerator.print(
        f"{run.stage}: {len(trainer.train_dataset)} train / {len(trainer.eval_dataset or [])} held-out rows; "
        f"{parameters[0]:,} of {parameters[1]:,} parameters trainable"
    )
    train_result = trainer.train()
    held_out = trainer.evaluate() if evaluate else {}
    trainer.save_model(str(run.output_dir))
    return trainer_metrics(trainer, train_result, parameters), held_out


def trainer_metrics(trainer, train_result=None, parameters: tuple[int, int] | None = None) -> dict[str, Any]:
    """What every Trainer run reports in ``metrics.json``: losses, steps, speed, parameter counts, precision."""
    log = trainer.state.log_history
    metrics = {
        "train_loss": last_logged(log, "loss"),
        "train_loss_first": next((e["loss"] for e in log if "loss" in e), None),
        "steps": trainer.state.global_step,
        "train_tokens": last_logged(log, "num_tokens"),  # non-pad tokens, all processes
        "num_processes": trainer.accelerator.num_processes,
        "bf16": bool(trainer.args.bf16),
    }
    if train_result is not None:
        metrics.update(
            train_loss_avg=train_result.training_loss,
            train_runtime_s=train_result.metrics.get("train_runtime"),
            train_samples_per_second=train_result.metrics.get("train_samples_per_second"),
        )
    if parameters is not None:
        metrics["trainable_parameters"], metrics["total_parameters"] = parameters
    return {k: v for k, v in metrics.items() if v is not None}  # what this trainer does not log is left out


def curves(
    log_history: Sequence[dict[str, Any]], names: dict[str, str]
) -> dict[str, list[tuple[float, float]]]:
    """``{label: [(step, value), ...]}`` for each ``{log key: label}`` found in a Trainer's ``log_history``."""
    out: dict[str, list[tuple[float, float]]] = {}
    for key, label in names.items():
        points = [(float(e.get("step", i)), float(e[key])) for i, e in enumerate(log_history) if key in e]
        if points:
            out[label] = points
    return out


def last_logged(log_history: Sequence[dict[str, Any]], key: str) -> float | None:
    """The last value logged under ``key`` (None if never)."""
    values = [e[key] for e in log_history if key in e]
    return float(values[-1]) if values else None
