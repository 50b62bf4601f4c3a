"""Benchmark: this repo's SFT stage vs a plain TRL SFT script, same model, data, batch and steps.

    python bench/sft.py [--steps 30] [--min_rounds 6] [--max_rounds 12] [--batch_size 32]

The repo side is ``rlhf.sft.main`` (what ``rlhf sft`` runs) from a YAML recipe; the plain side is what
``trl/scripts/sft.py`` does: ``load_dataset("json")``, ``SFTTrainer(model=path, peft_config=LoraConfig(...))``,
``train()``, ``evaluate()``, ``save_model()``. Both train LoRA (r 32, all linear layers) on the quickstart-sized
random model with the built-in task's chats, with the same training arguments. The rate is training tokens
(non-padding, TRL's own ``num_tokens`` count) per second of ``Trainer.train()``. ``ratio`` is the median of paired per-round ratios repo / plain
(``bench/_stats.py``), ``ratio_iqr`` their interquartile range. The last line of output is a JSON object.
"""

from __future__ import annotations

import argparse
import json
import shutil

from _finetune import (
    TrainTimer,
    alternate,
    save_base_model,
    summary,
    timed,
    workdir,
    write_builtin,
    write_yaml,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps per run")
    parser.add_argument(
        "--min_rounds",
        type=int,
        default=6,
        help="paired rounds at least (an even count: each side first as often)",
    )
    parser.add_argument(
        "--max_rounds", type=int, default=12, help="paired rounds at most (stops once the ratio IQR < 0.05)"
    )
    parser.add_argument("--batch_size", type=int, default=32, help="chats per optimizer step")
    bench = parser.parse_args()

    import torch
    import trl
    from datasets import load_dataset
    from peft import LoraConfig

    from rlhf import sft
    from rlhf.config import parse_args
    from rlhf.models import bf16_supported

    timer = TrainTimer(trl.SFTTrainer)
    root = workdir()
    base = save_base_model(root / "base")
    data = write_builtin("sft", root / "data", n_train=bench.batch_size * bench.steps, n_test=64)
    bf16 = bf16_supported()  # what the stage decides when bf16 is left unset
    use_cpu = bf16 and not torch.cuda.is_available()  # transformers wants use_cpu for bf16 on a CPU
    training = {
        "per_device_train_batch_size": bench.batch_size,
        "max_steps": bench.steps,
        "learning_rate": 2e-3,
        "lr_scheduler_type": "cosine",
        "warmup_steps": 3,
        "max_length": 128,
        "packing": False,
        "gradient_checkpointing": False,
        "logging_steps": bench.steps,  # one log line: the token count at the end
        "eval_strategy": "no",
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
        "seed": 0,
        "bf16": bf16,
    }
    lora = {"r": 32, "lora_alpha": 64, "lora_dropout": 0.0, "target_modules": "all-linear"}

    def run_repo(i: int) -> dict:
        config = write_yaml(
            root / f"repo-{i}.yaml",
            {
                "model_name_or_path": str(base),
                "dataset_name": str(data),
                "output_dir": str(root / f"repo-{i}"),
                "use_peft": True,
                "lora_r": lora["r"],
                "lora_alpha": lora["lora_alpha"],
                "lora_dropout": lora["lora_dropout"],
                "lora_target_modules": [lora["target_modules"]],
                "eval_prompts": 0,  # the gold evaluation generates answers: not part of this comparison
                "save_merged": False,  # the plain script saves the adapter only
                **training,
            },
        )

        def run() -> dict:
            types = (sft.SFTScriptArguments, sft.SFTConfig, sft.ModelConfig)
            metrics = sft.main(*parse_args(types, ["--config", str(config)]))
            return {"tokens": metrics["train_tokens"], **timer.last}

        return rate(timed(run))

    def run_plain(i: int) -> dict:
        def run() -> dict:
            dataset = load_dataset(
                "json", data_files={"train": str(data / "train.jsonl"), "test": str(data / "test.jsonl")}
            )
            args = trl.SFTConfig(output_dir=str(root / f"plain-{i}"), use_cpu=use_cpu, **training)
            trainer = trl.SFTTrainer(
                model=str(base),
                args=args,
                train_dataset=dataset["train"],
                eval_dataset=dataset["test"],
                peft_config=LoraConfig(task_type="CAUSAL_LM", **lora),
            )
            trainer.train()
            trainer.evaluate()
            trainer.save_model(args.output_dir)
            tokens = [e["num_tokens"] for e in trainer.state.log_history if "num_tokens" in e][-1]
            return {"tokens": tokens, **timer.last}

        return rate(timed(run))

    repo, plain = alternate(run_repo, run_plain, bench.min_rounds, bench.max_rounds)
    if any(r["tokens"] != p["tokens"] for r, p in zip(repo, plain, strict=True)):
        print(f"note: token counts differ: repo {repo[0]['tokens']} vs plain {plain[0]['tokens']}")
    figures = summary(
        "sft",
        "tokens/s",
        repo,
        plain,
        train_tokens_repo=repo[0]["tokens"],
        train_tokens_plain=plain[0]["tokens"],
        steps=bench.steps,
        batch_size=bench.batch_size,
        bf16=bf16,
        model_shape="quickstart (hidden 256, 4 layers), random init",
    )
    shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(figures))


def rate(result: dict) -> dict:
    return {
        **result,
        "work": result["tokens"],
        "rate": result["tokens"] / result["train_s"],
        "unit": "tokens/s",
    }


if __name__ == "__main__":
    main()
