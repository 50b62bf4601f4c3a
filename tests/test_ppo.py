"""The RL stage on a tiny model: PPO, RLOO and GRPO train a LoRA policy, compare it with the SFT policy, and save."""

import hashlib
import json
from pathlib import Path

import pytest
import torch
import yaml
from datasets import Dataset
from helpers import (
    FakeHub,
    ToyJudge,
    assert_config_is_what_ran,
    save_tiny_base,
    tiny_tokenizer,
    toy_prompt_rows,
    write_toy_splits,
)
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, set_seed

from rlhf import policy_eval, ppo
from rlhf.config import parse_args
from rlhf.dataset_formats import prompt_ids
from rlhf.models import load_reward_model
from rlhf.shared_base import load_rl_models


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A tiny policy, a reward model with a random head on the same backbone, and toy prompts."""
    root = tmp_path_factory.mktemp("ppo")
    save_tiny_base(root / "policy")
    set_seed(0)
    tokenizer = tiny_tokenizer()
    load_reward_model(str(root / "policy"), pad_token_id=tokenizer.pad_token_id).save_pretrained(
        root / "reward"
    )
    tokenizer.save_pretrained(root / "reward")
    write_toy_splits(root / "prompts", toy_prompt_rows(), n_test=4)
    return root


COMMON = {
    "use_peft": True,
    "lora_r": 8,
    "lora_alpha": 16,
    "lora_dropout": 0.0,
    "lora_target_modules": ["all-linear"],
    "learning_rate": 0.003,
    "logging_steps": 1,
    "save_strategy": "no",
    "report_to": "none",
    "gradient_checkpointing": False,
    "eval_prompts": 4,
    "bootstrap_resamples": 500,
    "disable_tqdm": True,
}
ALGORITHM_KEYS = {
    "ppo": {
        "total_episodes": 32,
        "per_device_train_batch_size": 8,
        "num_ppo_epochs": 2,
        "num_mini_batches": 2,
        "response_length": 12,
        "stop_token": "eos",
        "missing_eos_penalty": 1.0,
        "kl_coef": 0.05,
        "num_sample_generations": 0,
    },
    "rloo": {
        "max_steps": 3,
        "per_device_train_batch_size": 8,
        "num_generations": 4,
        "max_completion_length": 12,
        "beta": 0.05,
    },
    "grpo": {
        "max_steps": 3,
        "per_device_train_batch_size": 8,
        "num_generations": 4,
        "max_completion_length": 12,
        "beta": 0.05,
    },
}


def recipe(workdir: Path, output_dir: Path, algorithm: str, **overrides) -> Path:
    config = {
        "algorithm": algorithm,
        "model_name_or_path": str(workdir / "policy"),
        "reward_model_path": str(workdir / "reward"),
        "dataset_name": str(workdir / "prompts"),
        "output_dir": str(output_dir),
        **COMMON,
        **ALGORITHM_KEYS[algorithm],
        **overrides,
    }
    path = output_dir.parent / f"{output_dir.name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("algorithm", ["ppo", "rloo", "grpo"])
def test_rl_trains_the_adapter_and_compares_the_policy_with_sft(workdir, tmp_path, algorithm, monkeypatch):
    import huggingface_hub

    hub = FakeHub()
    monkeypatch.setattr(huggingface_hub, "HfApi", hub)
    out = tmp_path / algorithm
    digest = hashlib.sha256((workdir / "policy" / "model.safetensors").read_bytes()).hexdigest()
    config = recipe(workdir, out, algorithm, push_to_hub=True, hub_model_id=f"me/{algorithm}")
    types = (ppo.RLScriptArguments, ppo.CONFIGS[algorithm], ppo.ModelConfig)
    configs = parse_args(types, ["--config", str(config)])
    metrics = ppo.main(*configs)

    assert metrics["algorithm"] == algorithm and metrics["steps"] == (4 if algorithm == "ppo" else 3)
    assert metrics["eval_prompts"] == 4
    for key in ("reward_model_score_sft", "reward_model_score_policy", "kl_to_sft", "eos_rate_policy"):
        assert isinstance(metrics[key], float)
    gain = metrics["reward_model_score_policy"] - metrics["reward_model_score_sft"]
    assert metrics["reward_model_gain"] == pytest.approx(gain)
    assert metrics["reward_model_gain_ci_low"] <= gain <= metrics["reward_model_gain_ci_high"]
    assert metrics["kl_to_sft"] > -0.5  # a Monte-Carlo estimate of a KL: small noise below 0 only
    assert json.loads((out / "metrics.json").read_text())["algorithm"] == algorithm

    adapter = load_file(out / "adapter_model.safetensors")
    assert any(v.abs().sum() > 0 for k, v in adapter.items() if "lora_B" in k)  # the policy's adapter trained
    assert hashlib.sha256((workdir / "policy" / "model.safetensors").read_bytes()).hexdigest() == digest
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 4 and set(samples[0]) >= {
        "prompt",
        "sft",
        "rl",
        "reward_model_sft",
        "reward_model_rl",
    }
    assert "Answers before (SFT) and after" in (out / "README.md").read_text()
    assert (out / "reward.png").is_file() and (out / "kl.png").is_file()
    written = assert_config_is_what_ran(out, configs, types)
    assert (
        written["algorithm"] == algorithm and written["push_to_hub"] is True
    )  # as asked; pushed by the stage
    assert written["reward_model_path"] == str(workdir / "reward")
    if algorithm == "ppo":  # not TRL's default (EleutherAI/pythia-160m): the policy this run started from
        assert written["sft_model_path"] == str(workdir / "policy") and written["stop_token"] == "eos"
    (upload,) = hub.uploads  # pushed once, after training, by the stage (not by TRL's trainer)
    assert hub.created == [{"repo_id": f"me/{algorithm}", "private": None}]
    assert {"adapter_model.safetensors", "README.md", "samples.jsonl"} <= set(upload["files"])

    tokenizer = tiny_tokenizer()
    ids = torch.tensor([prompt_ids(tokenizer, toy_prompt_rows()[0]["prompt"])])
    with torch.no_grad():
        merged = AutoModelForCausalLM.from_pretrained(out / "merged")(ids).logits
        adapter_model = PeftModel.from_pretrained(
            AutoModelForCausalLM.from_pretrained(workdir / "policy"), out
        )
        assert torch.allclose(adapter_model(ids).logits, merged, atol=1e-5)


def test_compare_policies_scores_both_policies_with_the_gold_judge(workdir, monkeypatch):
    monkeypatch.setattr(policy_eval, "builtin_judge", lambda seed, kwargs: ToyJudge())
    tokenizer = tiny_tokenizer()
    tokenizer.padding_side = "left"
    policy = get_peft_model(
        AutoModelForCausalLM.from_pretrained(workdir / "policy"), LoraConfig(r=4, target_modules="all-linear")
    )
    reward_model = load_reward_model(str(workdir / "reward"))
    script_args = ppo.RLScriptArguments(dataset_name="builtin", eval_prompts=3, bootstrap_resamples=200)
    test = Dataset.from_list(toy_prompt_rows()[:5])
    samples, metrics = policy_eval.compare_policies(
        policy, None, tokenizer, test, script_args, seed=0, max_new_tokens=8, reward_model=reward_model
    )
    assert len(samples) == 3 and metrics["eval_prompts"] == 3
    # an untrained adapter is the SFT policy: same answers, no gain, zero KL
    assert [s["sft"] for s in samples] == [s["rl"] for s in samples]
    assert metrics["gold_reward_gain"] == 0.0 and metrics["reward_model_gain"] == 0.0
    assert metrics["gold_reward_gain_ci_low"] == metrics["gold_reward_gain_ci_high"] == 0.0
    assert metrics["kl_to_sft"] == pytest.approx(0.0, abs=1e-6)
    assert 0.0 <= metrics["answer_accuracy_policy"] <= 1.0


def test_the_config_follows_the_algorithm(workdir, tmp_path, capsys):
    path = recipe(workdir, tmp_path / "run", "ppo")
    with pytest.raises(SystemExit) as exit_:
        ppo.cli(["--config", str(path), "--algorithm", "grpo"])  # the PPO keys are not GRPO's
    assert exit_.value.code == 2
    assert "unknown key" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        ppo.cli(["--config", str(path), "--algorithm", "dpo"])
    assert "algorithm" in capsys.readouterr().err
    assert ppo._algorithm_of(["--config", str(recipe(workdir, tmp_path / "g", "grpo"))]) == "grpo"
    assert ppo._algorithm_of(["--algorithm=rloo"]) == "rloo" and ppo._algorithm_of([]) == "ppo"


def test_ppo_reference_is_the_adapter_free_policy_and_the_value_model_starts_as_the_reward_model(workdir):
    from rlhf.config import parse_args
    from rlhf.runs import reset_accelerate_state

    argv = ["--config", str(recipe(workdir, workdir / "unused-run", "ppo")), "--whiten_rewards", "true"]
    argv += ["--num_mini_batches", "1", "--bf16", "true"]
    script_args, training_args, model_args = parse_args(
        (ppo.RLScriptArguments, ppo.PPOConfig, ppo.ModelConfig), argv
    )
    assert (training_args.kl_coef, training_args.response_length, training_args.stop_token) == (
        0.05,
        12,
        "eos",
    )
    assert training_args.missing_eos_penalty == 1.0 and training_args.whiten_rewards is True
    tokenizer = tiny_tokenizer()
    tokenizer.padding_side = "left"
    data = script_args.load("prompts", seed=0)
    models = load_rl_models(script_args, training_args, model_args, tokenizer)
    # this reward model is a plain classifier, not a reward-stage adapter: separate models, and the log says why
    assert not models.shared and "no adapter_config.json" in models.note
    reward_model = models.reward_model
    try:
        trainer = ppo.build_trainer(script_args, training_args, model_args, tokenizer, data, models)
        assert trainer.ref_model is None and isinstance(
            trainer.model.policy, PeftModel
        )  # reference: adapter off
        assert trainer.accelerator.mixed_precision == "bf16"  # PPOTrainer's own Accelerator honours bf16
        value = trainer.model.value_model
        assert value is not reward_model
        assert torch.equal(value.score.weight, reward_model.score.weight)  # initialised from the reward model
        assert all(p.requires_grad for p in value.parameters())  # and trained (the reward model is not)
    finally:
        reset_accelerate_state()
    assert "ACCELERATE_MIXED_PRECISION" not in __import__("os").environ


def test_rloo_and_grpo_score_completions_where_ppo_does(workdir):
    tokenizer = tiny_tokenizer()
    reward_model = load_reward_model(str(workdir / "reward"))
    scorer = ppo.RewardModelScorer(reward_model, tokenizer)
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    prompts = [row["prompt"] for row in toy_prompt_rows()[:3]]
    completions = [[40, 41, eos], [42, eos, 43, 44], [45, 46, pad, pad]]  # ended, text after EOS, never ended
    expected = [[40, 41, eos], [42, eos], [45, 46]]
    from rlhf.scoring import reward_of_responses

    assert scorer(prompts, None, completions) == pytest.approx(
        reward_of_responses(reward_model, tokenizer, prompts, expected)
    )
