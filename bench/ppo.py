"""Benchmark: this repo's PPO stage vs a plain TRL PPO script, same policy, reward model, prompts and batch.

    python bench/ppo.py [--episodes 64] [--rounds 3] [--batch_size 16] [--response_length 24]

The repo side is ``rlhf.ppo.main`` (what ``rlhf ppo`` runs) from a YAML recipe; the plain side is what TRL's PPO
example does: tokenizer, policy, value and reward model from ``from_pretrained``, the prompts rendered with the chat
template, ``PPOTrainer(ref_model=None, peft_config=LoraConfig(...))``, ``train()``, ``save_model()``. Both use LoRA
on the quickstart-sized random policy (so the reference is the adapter-free policy), the value model initialised
from the reward model, and the built-in task's prompts. The rate is episodes (prompts rolled out and trained on)
per second of ``PPOTrainer.train()``; rounds alternate repo, plain, ... and the best of each side is compared.

Memory: on a GPU, the peak allocated CUDA memory of a repo run; on a CPU, the peak resident memory of the stage run
as its own process (``python -m rlhf.ppo``) next to a process that only loads one policy, plus the bytes of the
policy's parameters and of the model state PPO holds (policy, value model with gradients and Adam moments, reward
model). The last line of output is a JSON object (``ratio`` = repo / plain).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys

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

# Run in a child process; prints the child's own peak resident memory. VmHWM belongs to the process's address space
# after exec, unlike ru_maxrss, which on Linux also counts the parent's pages at fork time.
PEAK_RSS = """
import runpy, sys
if sys.argv[1] == "policy":
    import torch, trl, transformers
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(sys.argv[2])
else:
    sys.argv = ["rlhf.ppo", "--config", sys.argv[2]]
    runpy.run_module("rlhf.ppo", run_name="__main__", alter_sys=True)  # as `python -m`: pickling finds __main__
status = open("/proc/self/status").read()
print("VmHWM_kB", next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=64, help="prompts rolled out per run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per side (alternating)")
    parser.add_argument("--batch_size", type=int, default=16, help="rollouts per PPO update")
    parser.add_argument("--response_length", type=int, default=24, help="tokens generated per answer")
    parser.add_argument("--skip_memory", action="store_true", help="do not run the two memory processes")
    bench = parser.parse_args()

    import torch
    from datasets import load_dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    from rlhf import ppo
    from rlhf.config import parse_args
    from rlhf.models import bf16_supported, load_reward_model

    timer = TrainTimer(PPOTrainer)
    root = workdir()
    base = save_base_model(root / "policy")
    torch.manual_seed(1)
    tokenizer = AutoTokenizer.from_pretrained(base)
    load_reward_model(str(base), pad_token_id=tokenizer.pad_token_id).save_pretrained(root / "reward")
    tokenizer.save_pretrained(root / "reward")
    data = write_builtin("prompts", root / "data", n_train=max(bench.episodes, 64), n_test=16)
    bf16 = bf16_supported()  # what the stage decides when bf16 is left unset
    use_cpu = bf16 and not torch.cuda.is_available()
    training = {
        "total_episodes": bench.episodes,
        "per_device_train_batch_size": bench.batch_size,
        "num_ppo_epochs": 1,
        "num_mini_batches": 1,
        "local_rollout_forward_batch_size": bench.batch_size,
        "response_length": bench.response_length,
        "temperature": 1.0,
        "stop_token": "eos",
        "missing_eos_penalty": 1.0,
        "kl_coef": 0.05,
        "learning_rate": 1e-3,
        "num_sample_generations": 0,
        "gradient_checkpointing": False,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
        "seed": 0,
        "bf16": bf16,
    }
    lora = {"r": 32, "lora_alpha": 64, "lora_dropout": 0.0, "target_modules": "all-linear"}

    def repo_config(i: int):
        return write_yaml(
            root / f"repo-{i}.yaml",
            {
                "algorithm": "ppo",
                "model_name_or_path": str(base),
                "reward_model_path": str(root / "reward"),
                "dataset_name": str(data),
                "output_dir": str(root / f"repo-{i}"),
                "use_peft": True,
                "lora_r": lora["r"],
                "lora_alpha": lora["lora_alpha"],
                "lora_dropout": lora["lora_dropout"],
                "lora_target_modules": [lora["target_modules"]],
                "eval_prompts": 0,  # the before/after evaluation generates answers: not part of this comparison
                "save_merged": False,
                **training,
            },
        )

    cuda_peak: list[int] = []

    def run_repo(i: int) -> dict:
        config = repo_config(i)

        def run() -> dict:
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            types = (ppo.RLScriptArguments, ppo.PPOConfig, ppo.ModelConfig)
            ppo.main(*parse_args(types, ["--config", str(config)]))
            if torch.cuda.is_available():
                cuda_peak.append(torch.cuda.max_memory_allocated())
            return dict(timer.last)

        return rate(timed(run), bench.episodes)

    state_bytes: dict[str, int] = {}

    def run_plain(i: int) -> dict:
        def run() -> dict:
            tok = AutoTokenizer.from_pretrained(base, padding_side="left")
            policy = AutoModelForCausalLM.from_pretrained(base)
            value_model = AutoModelForSequenceClassification.from_pretrained(root / "reward", num_labels=1)
            reward_model = AutoModelForSequenceClassification.from_pretrained(root / "reward", num_labels=1)
            dataset = load_dataset(
                "json", data_files={"train": str(data / "train.jsonl"), "test": str(data / "test.jsonl")}
            )

            def tokenize(split):
                return split.map(
                    lambda row: {
                        "input_ids": tok.apply_chat_template(row["prompt"], add_generation_prompt=True)[
                            "input_ids"
                        ]
                    },
                    remove_columns=split.column_names,
                )

            args = PPOConfig(output_dir=str(root / f"plain-{i}"), use_cpu=use_cpu, **training)
            trainer = PPOTrainer(
                args=args,
                processing_class=tok,
                model=policy,
                ref_model=None,
                reward_model=reward_model,
                value_model=value_model,
                train_dataset=tokenize(dataset["train"]),
                eval_dataset=tokenize(dataset["test"]),
                peft_config=LoraConfig(task_type="CAUSAL_LM", **lora),
            )
            trainer.train()
            trainer.save_model(args.output_dir)
            if not state_bytes:
                state_bytes.update(model_state_bytes(trainer))
            return dict(timer.last)

        return rate(timed(run), bench.episodes)

    repo, plain = alternate(run_repo, run_plain, bench.rounds)

    policy_bytes = state_bytes["policy_parameters"]
    memory: dict[str, float] = {
        "policy_parameters_mb": round(policy_bytes / 2**20, 2),
        "ppo_model_state_mb": round(state_bytes["total"] / 2**20, 2),
        "ppo_model_state_in_policies": round(state_bytes["total"] / policy_bytes, 2),
    }
    if cuda_peak:
        memory["ppo_peak_cuda_mb"] = round(max(cuda_peak) / 2**20, 1)
        memory["ppo_peak_in_policies"] = round(max(cuda_peak) / policy_bytes, 2)
    elif not bench.skip_memory:
        memory.update(process_peaks(repo_config(bench.rounds), base))
    print(
        f"memory: one policy's parameters {memory['policy_parameters_mb']:.1f} MB; model state PPO holds "
        f"{memory['ppo_model_state_mb']:.1f} MB = {memory['ppo_model_state_in_policies']:.2f} policies "
        "(policy + LoRA, value model with gradients and Adam moments, reward model)"
    )
    if "ppo_peak_cuda_mb" in memory:
        print(f"memory: PPO stage peak CUDA allocation {memory['ppo_peak_cuda_mb']:.1f} MB")
    if "ppo_stage_peak_rss_mb" in memory:
        print(
            f"memory: PPO stage process peak RSS {memory['ppo_stage_peak_rss_mb']:.0f} MB vs "
            f"{memory['one_policy_process_peak_rss_mb']:.0f} MB for a process that only loads one policy "
            "(same imports)"
        )
    figures = summary(
        "ppo",
        "episodes/s",
        repo,
        plain,
        episodes=bench.episodes,
        batch_size=bench.batch_size,
        response_length=bench.response_length,
        bf16=bf16,
        model_shape="quickstart (hidden 256, 4 layers), random init",
        **memory,
    )
    shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(figures))


def rate(result: dict, episodes: int) -> dict:
    return {**result, "work": episodes, "rate": episodes / result["train_s"], "unit": "episodes/s"}


def model_state_bytes(trainer) -> dict[str, int]:
    """Bytes of the tensors PPO keeps for the whole run: weights of every model, gradients and Adam moments."""

    def size(params) -> int:
        return sum(p.numel() * p.element_size() for p in params)

    policy = trainer.model.policy
    value = trainer.model.value_model
    trainable = [p for p in trainer.model.parameters() if p.requires_grad]
    base_policy = [p for n, p in policy.named_parameters() if "lora_" not in n]
    state = {
        "policy_parameters": size(base_policy),
        "policy_with_adapter": size(policy.parameters()),
        "value_model": size(value.parameters()),
        "reward_model": size(trainer.reward_model.parameters()),
        "gradients_and_adam": 3 * size(trainable),  # a gradient and two Adam moments per trainable weight
    }
    state["total"] = (
        state["policy_with_adapter"]
        + state["value_model"]
        + state["reward_model"]
        + state["gradients_and_adam"]
    )
    return state


def process_peaks(config, policy_dir) -> dict[str, float]:
    """Peak resident memory (MB) of the PPO stage run as its own process, and of a process that loads one policy."""

    def peak(*args: str) -> float:
        done = subprocess.run([sys.executable, "-c", PEAK_RSS, *args], capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"the {args[0]} memory run failed:\n{done.stderr[-3000:]}")
        return int(done.stdout.split("VmHWM_kB")[-1].split()[0]) / 1024

    one_policy = peak("policy", str(policy_dir))
    stage = peak("ppo", str(config))
    return {"ppo_stage_peak_rss_mb": round(stage, 1), "one_policy_process_peak_rss_mb": round(one_policy, 1)}


if __name__ == "__main__":
    main()
