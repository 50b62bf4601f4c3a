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

from rlhf import stages
from rlhf.config import run_cli
from rlhf.models import save_merged
from rlhf.reporting import markdown_table, plot_curves, prompt_text, write_jsonl
from rlhf.runs import stage_run
from rlhf.sampling import generate_answers
from rlhf.scoring import builtin_judge, gold_scores
from rlhf.statistics import mean


@dataclass
class SFTScriptArguments(stages.StageArguments):
    """
    The SFT stage's own arguments: how it evaluates. The others are TRL's `SFTConfig` and `ModelConfig` and
    `rlhf.stages.StageArguments` (dataset, tokenizer, model card, merged model, overwriting).

    Args:
        eval_rows (`int` or `None`, *optional*, defaults to `None`):
            Held-out rows the evaluation loss is computed on (`None`: all of the test split).
        eval_prompts (`int`, *optional*, defaults to `200`):
            Held-out prompts answered after training for the gold-judge accuracy (0: skip).
        eval_max_new_tokens (`int`, *optional*, defaults to `48`):
            Longest answer generated in that evaluation (tokens).
        eval_generation_batch_size (`int`, *optional*, defaults to `64`):
            Prompts per `generate` call in that evaluation.
    """

    eval_rows: int | None = field(
        default=None, metadata={"help": "Held-out rows for the evaluation loss (None: all)."}
    )
    eval_prompts: int = field(
        default=200, metadata={"help": "Held-out prompts for the gold evaluation (0: skip)."}
    )
    eval_max_new_tokens: int = field(default=48, metadata={"help": "Longest generated answer (tokens)."})
    eval_generation_batch_size: int = field(default=64, metadata={"help": "Prompts per generate call."})


@dataclass
class SFTConfig(stages.AutoBF16, trl.SFTConfig):
    pass


def main(script_args: SFTScriptArguments, training_args: SFTConfig, model_args: ModelConfig) -> dict:
    """Fine-tune, save the adapter and the merged model, evaluate; returns the metrics written to metrics.json."""
    with stage_run("sft", script_args, training_args, model_args) as run:
        # Everything that can fail on a user's input fails here, before the run directory gets its config.
        tokenizer, data = stages.load_inputs(run, script_args, training_args, model_args, "sft")
        trainer = trl.SFTTrainer(
            model=stages.causal_lm(script_args, training_args, model_args),
            args=training_args,
            train_dataset=data["train"],
            eval_dataset=_head(data["test"], script_args.eval_rows),
            processing_class=tokenizer,
            peft_config=get_peft_config(model_args),
        )
        run.write_config()
        metrics, held_out = stages.train_and_save(trainer, run)
        metrics.update(
            eval_loss=held_out.get("eval_loss"),
            eval_mean_token_accuracy=held_out.get("eval_mean_token_accuracy"),
        )
        if run.is_main_process:
            model, tokenizer = trainer.model, trainer.processing_class
            model.generation_config.eos_token_id = tokenizer.eos_token_id
            model.generation_config.pad_token_id = tokenizer.pad_token_id
            if script_args.save_merged:
                save_merged(model, tokenizer, run.output_dir / "merged")
            samples, gold = evaluate_answers(model, tokenizer, data["test"], script_args, training_args.seed)
            metrics.update(gold)
            log = trainer.state.log_history
            description = write_outputs(run.output_dir, script_args, model_args, samples, log)
            run.finish(metrics, description=description, tags=["trl", "sft"])
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


def write_outputs(output_dir, script_args, model_args, samples: list[dict], log_history: list[dict]) -> str:
    """Loss plot and samples; returns the model card's description."""
    plot_curves(
        output_dir / "loss.png",
        stages.curves(log_history, {"loss": "train", "eval_loss": "held-out"}),
        title="SFT loss (completion tokens)",
        ylabel="loss (nats/token)",
    )
    if samples:
        write_jsonl(output_dir / "samples.jsonl", samples)
    columns = ["prompt", "answer", "reference"] + (["correct"] if samples and "correct" in samples[0] else [])
    table = markdown_table(samples[: script_args.card_samples], columns) if samples else ""
    return (
        f"A LoRA adapter (and `merged/`, the full model) from supervised fine-tuning of "
        f"`{model_args.model_name_or_path}` on `{script_args.dataset_name}` with TRL's `SFTTrainer`."
        + (f"\n\n## Sample answers (held-out prompts, greedy)\n\n{table}" if table else "")
    )


def cli(argv=None):
    return run_cli(main, (SFTScriptArguments, SFTConfig, ModelConfig), "rlhf sft", argv)


if __name__ == "__main__":
    cli()
