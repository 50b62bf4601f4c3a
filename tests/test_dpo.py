"""The DPO stage on a tiny model and a local preference file: the reference is the adapter-free policy, the
adapter learns to prefer the chosen answers, the policy is compared with the SFT policy, and the run reloads."""

import hashlib
import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from helpers import (
    assert_config_is_what_ran,
    cli_error,
    save_tiny_base,
    tiny_tokenizer,
    toy_preference_rows,
    toy_prompt_rows,
    write_jsonl,
)
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, set_seed

from rlhf import dpo
from rlhf.config import parse_args
from rlhf.dataset_formats import prompt_ids
from rlhf.models import load_reward_model

STAGE_TYPES = (dpo.DPOScriptArguments, dpo.DPOConfig, dpo.ModelConfig)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A tiny policy, a reward model with a random head on it, and one JSONL file of preference pairs."""
    root = tmp_path_factory.mktemp("dpo")
    save_tiny_base(root / "policy")
    set_seed(0)
    tokenizer = tiny_tokenizer()
    load_reward_model(str(root / "policy"), pad_token_id=tokenizer.pad_token_id).save_pretrained(
        root / "reward"
    )
    tokenizer.save_pretrained(root / "reward")
    write_jsonl(root / "pairs.jsonl", toy_preference_rows(repeats=2))  # 24 pairs, 2 per question
    return root


def recipe(workdir: Path, output_dir: Path, **overrides) -> Path:
    config = {
        "model_name_or_path": str(workdir / "policy"),
        "dataset_name": str(workdir / "pairs.jsonl"),
        "holdout_fraction": 0.25,  # the file has no test split: 3 of its 12 questions are held out
        "reward_model_path": str(workdir / "reward"),
        "output_dir": str(output_dir),
        "use_peft": True,
        "lora_r": 8,
        "lora_alpha": 16,
        "lora_dropout": 0.0,
        "lora_target_modules": ["all-linear"],
        "beta": 0.1,
        "learning_rate": 0.01,
        "max_steps": 12,
        "per_device_train_batch_size": 6,
        "max_length": 64,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
        "eval_prompts": 8,
        "eval_max_new_tokens": 8,
        "eval_generation_batch_size": 8,
        "bootstrap_resamples": 200,
        "seed": 0,
        **overrides,
    }
    path = output_dir.parent / f"{output_dir.name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_dpo_learns_the_preferences_against_the_adapter_free_reference(workdir, tmp_path, capsys):
    out = tmp_path / "run"
    digest = hashlib.sha256((workdir / "policy" / "model.safetensors").read_bytes()).hexdigest()
    configs = parse_args(STAGE_TYPES, ["--config", str(recipe(workdir, out))])
    metrics = dpo.main(*configs)

    # the LoRA adapter starts at zero, so at the first step the policy equals the adapter-free reference: the
    # DPO loss -log sigmoid(beta * 0) is exactly log 2; it falls as the chosen answers win
    assert metrics["train_loss_first"] == pytest.approx(math.log(2), abs=1e-4)
    assert metrics["train_loss"] < 0.5 * math.log(2)
    assert (
        metrics["eval_pairs"] == 6 and metrics["eval_reward_accuracy"] >= 5 / 6
    )  # held-out pairs, chance 0.5
    assert metrics["eval_reward_margin"] > 0
    # the comparison with the SFT policy (its own 3 held-out questions, each once) by the reward model and the KL
    assert metrics["eval_prompts"] == 3
    gain = metrics["reward_model_score_policy"] - metrics["reward_model_score_sft"]
    assert metrics["reward_model_gain"] == pytest.approx(gain)
    assert metrics["reward_model_gain_ci_low"] <= gain <= metrics["reward_model_gain_ci_high"]
    assert metrics["kl_to_sft"] > 0.01  # the trained adapter moved the policy
    assert json.loads((out / "metrics.json").read_text()) == pytest.approx(metrics)

    written = assert_config_is_what_ran(out, configs, STAGE_TYPES)
    assert written["beta"] == 0.1 and written["reward_model_path"] == str(workdir / "reward")
    split = json.loads((out / "split.json").read_text())  # the carved split, for later stages
    assert split["carved"] and len((out / "split" / "test.jsonl").read_text().splitlines()) == 6
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 3 and {"prompt", "sft", "dpo", "reward_model_sft", "reward_model_dpo"} <= set(
        samples[0]
    )
    card = (out / "README.md").read_text()
    assert "Answers before (SFT) and after (DPO)" in card and "- dpo" in card
    assert (out / "loss.png").is_file() and (out / "rewards.png").is_file()

    adapter = load_file(out / "adapter_model.safetensors")
    assert any(v.abs().sum() > 0 for k, v in adapter.items() if "lora_B" in k)
    assert hashlib.sha256((workdir / "policy" / "model.safetensors").read_bytes()).hexdigest() == digest
    ids = torch.tensor([prompt_ids(tiny_tokenizer(), toy_prompt_rows()[0]["prompt"])])
    with torch.no_grad():
        merged = AutoModelForCausalLM.from_pretrained(out / "merged")(ids).logits
        base = AutoModelForCausalLM.from_pretrained(workdir / "policy")
        assert torch.allclose(PeftModel.from_pretrained(base, out)(ids).logits, merged, atol=1e-5)

    assert "already holds a finished run" in cli_error(
        dpo.cli, ["--config", str(recipe(workdir, out))], capsys
    )


def test_a_file_without_preference_columns_stops_before_training(workdir, tmp_path, capsys):
    data = write_jsonl(tmp_path / "qa.jsonl", [{"prompt": "Hi?", "answer": "Hello."}] * 4)
    out = tmp_path / "run"
    err = cli_error(dpo.cli, ["--config", str(recipe(workdir, out, dataset_name=str(data)))], capsys)
    assert "missing column 'chosen'" in err and str(data) in err
    assert not out.exists()  # a user's mistake before training leaves nothing behind
