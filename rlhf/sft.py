"""SFT stage: supervised fine-tuning on chat demonstrations with TRL's ``SFTTrainer`` and LoRA.

    rlhf sft --config configs/quickstart/sft.yaml [--key value ...]
    accelerate launch --config_file launch/cpu_ddp.yaml -m rlhf.sft --config configs/quickstart/sft.yaml

Glue in the style of ``trl/scripts/sft.py``: the dataset fields (`SFTScriptArguments`), TRL's `SFTConfig`
(every ``transformers.TrainingArguments`` option too) and TRL's `ModelConfig` (LoRA: ``use_peft``,
``lora_r``, ``lora_alpha``, ``lora_dropout``, ``lora_target_modules`` such as ``all-linear``) come from the
YAML and the command line. Conversational prompt/completion data trains on the completion only (TRL's
default for that format). The run directory gets the adapter, ``merged/`` (the full model the reward and RL
stages start from), the loss plot, ``samples.jsonl``, ``metrics.json`` and a model card. With the built-in
task, the held-out prompts are answered greedily and scored by the gold judge (``answer_accuracy``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import trl
from trl import ModelConfig, get_peft_config

from rlhf.config import ConfigError, config_to_dict, run_cli
from rlhf.datasets import DatasetArguments
from rlhf.evaluation import (
    builtin_judge,
    generate_answers,
    gold_scores,
    markdown_table,
    mean,
    prompt_text,
    write_jsonl,
)
from rlhf.models import auto_precision, count_parameters, load_causal_lm, load_tokenizer, save_merged
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


@dataclass
class SFTScriptArguments(DatasetArguments):
    """
    Arguments of the SFT stage besides TRL's `SFTConfig` and `ModelConfig` (plus the dataset fields of
    `rlhf.datasets.DatasetArguments`).

    Args:
        tokenizer_name_or_path (`str` or `None`, *optional*, defaults to `None`):
            Tokenizer to use (`None`: the model's own).
        gguf_file (`str` or `None`, *optional*, defaults to `None`):
            GGUF file inside `model_name_or_path` to load (or give the `.gguf` path as `model_name_or_path`).
        eval_rows (`int` or `None`, *optional*, defaults to `None`):
            Held-out rows the evaluation loss is computed on (`None`: all of the test split).
        eval_prompts (`int`, *optional*, defaults to `200`):
            Held-out prompts answered after training for the gold-judge accuracy (0: skip).
        eval_max_new_tokens (`int`, *optional*, defaults to `48`):
            Longest answer generated in that evaluation (tokens).
        eval_generation_batch_size (`int`, *optional*, defaults to `64`):
            Prompts per `generate` call in that evaluation.
        card_samples (`int`, *optional*, defaults to `8`):
            Sample answers shown in the model card (all go to `samples.jsonl`).
        save_merged (`bool`, *optional*, defaults to `True`):
            Also save the model with the adapter merged in `output_dir/merged` (what the next stages load).
        overwrite_output_dir (`bool`, *optional*, defaults to `False`):
            Replace a finished run in `output_dir`.
    """

    tokenizer_name_or_path: str | None = field(
        default=None, metadata={"help": "Tokenizer (None: the model's)."}
    )
    gguf_file: str | None = field(default=None, metadata={"help": "GGUF file inside model_name_or_path."})
    eval_rows: int | None = field(
        default=None, metadata={"help": "Held-out rows for the evaluation loss (None: all)."}
    )
    eval_prompts: int = field(
        default=200, metadata={"help": "Held-out prompts for the gold evaluation (0: skip)."}
    )
    eval_max_new_tokens: int = field(default=48, metadata={"help": "Longest generated answer (tokens)."})
    eval_generation_batch_size: int = field(default=64, metadata={"help": "Prompts per generate call."})
    card_samples: int = field(default=8, metadata={"help": "Sample answers shown in the model card."})
    save_merged: bool = field(
        default=True, metadata={"help": "Also save the merged model in output_dir/merged."}
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Replace a finished run in output_dir."}
    )


@dataclass
class SFTConfig(trl.SFTConfig):
    __doc__ = (
        "TRL's `SFTConfig`, except that `bf16` left unset means: on where the hardware has fast bf16 (a bf16 GPU, "
        "or a CPU with bf16 instructions), off elsewhere.\n\n" + (trl.SFTConfig.__doc__ or "")
    )

    bf16: bool | None = field(
        default=None, metadata={"help": "bf16 mixed precision (unset: on where the hardware has fast bf16)."}
    )

    def __post_init__(self):
        auto_precision(self)
        super().__post_init__()


def main(script_args: SFTScriptArguments, training_args: SFTConfig, model_args: ModelConfig) -> dict:
    """Fine-tune, save the adapter and the merged model, evaluate; returns the metrics written to metrics.json."""
    wall_start = time.perf_counter()
    if not model_args.model_name_or_path:
        raise ConfigError("set model_name_or_path (the pretrained model to fine-tune)")
    from accelerate import PartialState

    state = PartialState()
    prepare_output_dir(
        training_args.output_dir, script_args.overwrite_output_dir
    )  # refuse a finished run first

    # Everything that can fail on a user's input fails here, before any training.
    tokenizer = load_tokenizer(
        script_args.tokenizer_name_or_path or model_args.model_name_or_path,
        chat_template_path=training_args.chat_template_path,
        gguf_file=script_args.gguf_file,
        trust_remote_code=training_args.trust_remote_code,
        revision=model_args.model_revision,
    )
    data = script_args.load("sft", training_args.seed)
    output_dir = start_run(  # the input is usable: now the run directory gets its config
        training_args.output_dir, script_args.overwrite_output_dir, state.is_main_process,
        script_args, training_args, model_args,
    )  # fmt: skip
    model = load_causal_lm(
        model_args.model_name_or_path,
        dtype=model_args.dtype,
        gguf_file=script_args.gguf_file,
        trust_remote_code=training_args.trust_remote_code,
        revision=model_args.model_revision,
        attn_implementation=model_args.attn_implementation,
    )

    push_to_hub = defer_hub_push(training_args)  # pushed once, finished, by push_run below
    trainer = trl.SFTTrainer(
        model=model,
        args=training_args,
        train_dataset=data["train"],
        eval_dataset=_head(data["test"], script_args.eval_rows),
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args),
    )
    trainable, total = count_parameters(trainer.model)
    trainer.accelerator.print(
        f"sft: {len(data['train'])} train / {len(data['test'])} held-out rows; "
        f"{trainable:,} of {total:,} parameters trainable"
    )
    train_result = trainer.train()
    eval_metrics = trainer.evaluate()
    trainer.save_model(str(output_dir))  # the adapter (or the full model without LoRA) and the tokenizer
    restore_hub_push(training_args, push_to_hub)
    tokenizer = trainer.processing_class

    metrics = {
        "train_loss": last_logged(trainer.state.log_history, "loss"),
        "train_loss_first": next((e["loss"] for e in trainer.state.log_history if "loss" in e), None),
        "train_loss_avg": train_result.training_loss,
        "eval_loss": eval_metrics.get("eval_loss"),
        "eval_mean_token_accuracy": eval_metrics.get("eval_mean_token_accuracy"),
        "steps": trainer.state.global_step,
        "train_runtime_s": train_result.metrics.get("train_runtime"),
        "train_samples_per_second": train_result.metrics.get("train_samples_per_second"),
        "train_tokens": last_logged(trainer.state.log_history, "num_tokens"),  # non-pad tokens, all processes
        "trainable_parameters": trainable,
        "total_parameters": total,
        "num_processes": trainer.accelerator.num_processes,
        "bf16": bool(training_args.bf16),
    }
    if trainer.accelerator.is_main_process:
        model = trainer.model
        model.generation_config.eos_token_id = tokenizer.eos_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        if script_args.save_merged:
            save_merged(model, tokenizer, output_dir / "merged")
        samples, gold = evaluate_answers(model, tokenizer, data["test"], script_args, training_args.seed)
        metrics.update(gold)
        metrics["wall_time_s"] = time.perf_counter() - wall_start
        write_outputs(
            output_dir, script_args, training_args, model_args, metrics, samples, trainer.state.log_history
        )
        if push_to_hub:
            push_run(output_dir, training_args)
    trainer.accelerator.wait_for_everyone()
    reset_accelerate_state()
    return metrics


def _head(dataset, rows: int | None):
    return dataset if rows is None else dataset.select(range(min(rows, len(dataset))))


def evaluate_answers(
    model, tokenizer, test, script_args: SFTScriptArguments, seed: int
) -> tuple[list[dict], dict]:
    """Greedy answers to held-out prompts; with the built-in task, the gold judge's accuracy and mean score."""
    n = min(script_args.eval_prompts, len(test))
    if n == 0:
        return [], {}
    test = test.select(range(n))
    prompts = test["prompt"]
    start = time.perf_counter()
    answers = generate_answers(
        model, tokenizer, prompts,
        max_new_tokens=script_args.eval_max_new_tokens, batch_size=script_args.eval_generation_batch_size,
    )  # fmt: skip
    references = (
        [c[-1]["content"] for c in test["completion"]] if "completion" in test.column_names else [""] * n
    )
    samples = [
        {"prompt": prompt_text(p), "reference": r, "answer": a}
        for p, r, a in zip(prompts, references, answers, strict=True)
    ]
    metrics = {"eval_prompts": n, "eval_generation_s": time.perf_counter() - start}
    if script_args.dataset_name == "builtin":
        judge = builtin_judge(script_args.task_seed, script_args.task_kwargs())
        gold = gold_scores(judge, prompts, answers)
        for sample, score, correct in zip(samples, gold["score"], gold["correct"], strict=True):
            sample.update(gold_score=score, correct=correct)
        metrics.update(answer_accuracy=mean(gold["correct"]), gold_score=mean(gold["score"]))
        print(f"sft: answer accuracy {metrics['answer_accuracy']:.3f} on {n} held-out prompts (gold judge)")
    return samples, metrics


def write_outputs(
    output_dir,
    script_args,
    training_args,
    model_args,
    metrics: dict,
    samples: list[dict],
    log_history: list[dict],
) -> None:
    """Loss plot, samples, model card, and metrics.json last (which marks the run finished)."""
    plot_curves(
        output_dir / "loss.png",
        curves(log_history, {"loss": "train", "eval_loss": "held-out"}),
        title="SFT loss (completion tokens)",
        ylabel="loss (nats/token)",
    )
    if samples:
        write_jsonl(output_dir / "samples.jsonl", samples)
    columns = ["prompt", "answer", "reference"] + (["correct"] if samples and "correct" in samples[0] else [])
    table = markdown_table(samples[: script_args.card_samples], columns) if samples else ""
    description = (
        f"A LoRA adapter (and `merged/`, the full model) from supervised fine-tuning of "
        f"`{model_args.model_name_or_path}` on `{script_args.dataset_name}` with TRL's `SFTTrainer`."
        + (f"\n\n## Sample answers (held-out prompts, greedy)\n\n{table}" if table else "")
    )
    write_model_card(
        output_dir,
        stage="sft",
        description=description,
        base_model=model_args.model_name_or_path,
        datasets=hub_datasets(script_args.dataset_name),
        metrics=metrics,
        config=config_to_dict(script_args, training_args, model_args),
        tags=["trl", "sft", "lora"] if model_args.use_peft else ["trl", "sft"],
        library_name="peft" if model_args.use_peft else "transformers",  # what the top level holds
    )
    write_metrics(output_dir, metrics)


def cli(argv=None):
    return run_cli(main, (SFTScriptArguments, SFTConfig, ModelConfig), "rlhf sft", argv)


if __name__ == "__main__":
    cli()
