"""`rlhf push --dry-run` writes exactly the folder it would upload, and that folder loads back."""

import json

import pytest
import torch
from huggingface_hub import ModelCard
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from rlhf.push import cli
from rlhf.runs import write_metrics
from rlhf.tokenizer import train_tokenizer

TEXTS = ["Ana lives in Velmora.", "Bo plays the flute.", "Cy keeps a cat named Dot."] * 20


@pytest.fixture
def run_dir(tmp_path):
    """A finished LoRA stage run: adapter + tokenizer + metrics + config, and a merged model."""
    tokenizer = train_tokenizer(TEXTS, vocab_size=300)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    base = LlamaForCausalLM(config)
    base_dir = tmp_path / "base"
    base.save_pretrained(base_dir)
    tokenizer.save_pretrained(base_dir)
    model = get_peft_model(
        base, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    run = tmp_path / "sft"
    model.save_pretrained(run)
    tokenizer.save_pretrained(run)
    merged = model.merge_and_unload()
    merged.save_pretrained(run / "merged")
    tokenizer.save_pretrained(run / "merged")
    (run / "config.yaml").write_text(
        f"model_name_or_path: {base_dir}\ndataset_name: builtin\nlearning_rate: 0.001\n"
    )
    write_metrics(run, {"eval_accuracy": 0.875, "train_loss": 1.5})
    return run, base_dir


def test_dry_run_adapter_folder_loads_and_card_parses(run_dir, tmp_path, capsys):
    run, base_dir = run_dir
    out = tmp_path / "upload"
    code = cli(
        [
            str(run),
            "--repo-id",
            "me/tiny-sft",
            "--dry-run",
            "--output-dir",
            str(out),
            "--base-model",
            "org/tiny",
        ]
    )
    assert code == 0 and str(out) in capsys.readouterr().out
    assert not (out / "merged").exists() and (out / "adapter_model.safetensors").is_file()
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    model = PeftModel.from_pretrained(base, out)
    ids = torch.tensor([[1, 2, 3]])
    reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), run)
    assert torch.allclose(model(ids).logits, reference(ids).logits)
    AutoTokenizer.from_pretrained(out)
    card = ModelCard.load(out / "README.md")
    assert card.data.base_model == "org/tiny" and card.data.library_name == "peft"
    assert card.data.to_dict()["rlhf_metrics"]["eval_accuracy"] == pytest.approx(0.875)
    assert "learning_rate: 0.001" in card.text
    assert json.loads((out / "metrics.json").read_text())["train_loss"] == 1.5


def test_dry_run_merged_folder_loads(run_dir, tmp_path):
    run, _ = run_dir
    out = tmp_path / "merged-upload"
    assert cli([str(run), "--repo-id", "me/tiny", "--merged", "--dry-run", "--output-dir", str(out)]) == 0
    model = AutoModelForCausalLM.from_pretrained(out)
    reference = AutoModelForCausalLM.from_pretrained(run / "merged")
    ids = torch.tensor([[4, 5, 6]])
    assert torch.allclose(model(ids).logits, reference(ids).logits)
    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "transformers" and "sft" in card.data.tags


def test_push_refuses_what_it_cannot_publish(tmp_path, run_dir, capsys):
    run, _ = run_dir
    assert cli([str(tmp_path / "missing"), "--repo-id", "me/x", "--dry-run"]) == 2
    assert "no such run directory" in capsys.readouterr().err
    (tmp_path / "notrun").mkdir()
    assert cli([str(tmp_path / "notrun"), "--repo-id", "me/x", "--merged", "--dry-run"]) == 2
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("finished work")
    assert cli([str(run), "--repo-id", "me/x", "--dry-run", "--output-dir", str(out)]) == 2
    assert (out / "keep.txt").read_text() == "finished work"


def test_push_to_hub_and_rlhf_push_upload_the_same_files_and_card(tmp_path, monkeypatch):
    """A stage with ``push_to_hub: true`` publishes exactly what ``rlhf push RUN_DIR`` publishes afterwards."""
    import huggingface_hub
    from helpers import FakeHub, save_tiny_base, toy_sft_rows, write_toy_splits

    from rlhf import sft

    hub = FakeHub()
    monkeypatch.setattr(huggingface_hub, "HfApi", hub)
    save_tiny_base(tmp_path / "base")
    write_toy_splits(tmp_path / "data", toy_sft_rows())
    run = tmp_path / "sft-run"
    sft.cli(
        ["--model_name_or_path", str(tmp_path / "base"), "--dataset_name", str(tmp_path / "data"),
         "--output_dir", str(run), "--use_peft", "true", "--lora_target_modules", "all-linear", "--max_steps", "2",
         "--per_device_train_batch_size", "4", "--report_to", "none", "--save_strategy", "no",
         "--eval_prompts", "2", "--eval_max_new_tokens", "4", "--disable_tqdm", "true",
         "--push_to_hub", "true", "--hub_model_id", "me/tiny-sft"]
    )  # fmt: skip
    assert cli([str(run), "--repo-id", "me/tiny-sft"]) == 0
    by_stage, by_command = hub.uploads
    assert by_stage["files"] == by_command["files"] and by_stage["card"] == by_command["card"]
    assert by_stage["card"] == (run / "README.md").read_text()  # the card the stage wrote, with its samples
    assert "Sample answers" in by_stage["card"] and "lora_r: 16" in by_stage["card"]
    assert {"adapter_model.safetensors", "config.yaml", "metrics.json", "loss.png", "samples.jsonl"} <= set(
        by_stage["files"]
    )
    assert not any("/" in f or f in ("training_args.bin", "split.json.tmp") for f in by_stage["files"])

    assert cli([str(run), "--repo-id", "me/tiny-sft-merged", "--merged"]) == 0
    merged = hub.uploads[-1]
    assert {"model.safetensors", "config.json", "config.yaml", "metrics.json", "loss.png"} <= set(
        merged["files"]
    )
    assert "adapter_model.safetensors" not in merged["files"]
    assert ModelCard(merged["card"]).data.library_name == "transformers"
