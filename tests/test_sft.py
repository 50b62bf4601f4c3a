"""The SFT stage on a tiny model: it learns, saves an adapter and a merged model that reload, and stops early on bad input."""

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from helpers import (
    FakeHub,
    ToyJudge,
    accelerate_launch,
    assert_config_is_what_ran,
    cli_error,
    save_tiny_base,
    tiny_tokenizer,
    toy_sft_rows,
    write_jsonl,
    write_toy_splits,
)
from huggingface_hub import ModelCard
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from rlhf import sft
from rlhf.config import ConfigError, parse_args
from rlhf.dataset_formats import prompt_ids
from rlhf.datasets import DatasetFormatError
from rlhf.models import ChatTemplateError
from rlhf.runs import RunDirError

STAGE_TYPES = (sft.SFTScriptArguments, sft.SFTConfig, sft.ModelConfig)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("sft")
    save_tiny_base(root / "base")
    write_toy_splits(root / "data", toy_sft_rows())
    return root


def recipe(workdir: Path, output_dir: Path, **overrides) -> Path:
    """A flat YAML recipe like configs/quickstart/sft.yaml, for the tiny model and toy data."""
    config = {
        "model_name_or_path": str(workdir / "base"),
        "dataset_name": str(workdir / "data"),
        "output_dir": str(output_dir),
        "use_peft": True,
        "lora_r": 8,
        "lora_alpha": 16,
        "lora_dropout": 0.0,
        "lora_target_modules": ["all-linear"],
        "learning_rate": 0.01,
        "max_steps": 16,
        "per_device_train_batch_size": 4,
        "logging_steps": 4,
        "save_strategy": "no",
        "report_to": "none",
        "eval_prompts": 4,
        "eval_max_new_tokens": 16,
        "disable_tqdm": True,
        **overrides,
    }
    path = output_dir.parent / f"{output_dir.name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def digest(folder: Path) -> str:
    return hashlib.sha256(
        b"".join(p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file())
    ).hexdigest()


def test_sft_learns_and_saves_an_adapter_and_a_merged_model_that_reload(workdir, tmp_path, capsys):
    out = tmp_path / "run"
    base_digest = digest(workdir / "base")
    configs = parse_args(
        STAGE_TYPES, ["--config", str(recipe(workdir, out)), "--lora_r", "4"]
    )  # CLI over YAML
    metrics = sft.main(*configs)

    assert metrics["train_loss"] < 0.7 * metrics["train_loss_first"]  # the loss moved
    assert 0 < metrics["trainable_parameters"] < metrics["total_parameters"] / 2
    assert metrics["eval_loss"] > 0 and metrics["eval_prompts"] == 4
    assert json.loads((out / "metrics.json").read_text()) == pytest.approx(metrics)
    written = assert_config_is_what_ran(out, configs, STAGE_TYPES)
    assert (
        written["lora_r"] == 4 and written["eos_token"] == configs[1].eos_token
    )  # TrainingArguments masks *_token
    assert (out / "loss.png").stat().st_size > 0
    assert len((out / "samples.jsonl").read_text().splitlines()) == 4
    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "peft" and "sft" in card.data.tags
    assert card.data.rlhf_metrics["eval_loss"] == pytest.approx(metrics["eval_loss"])

    adapter = load_file(out / "adapter_model.safetensors")
    lora_b = [v for k, v in adapter.items() if "lora_B" in k]
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b)  # B starts at zero: the adapter trained
    assert all(v.shape[0] == 4 or v.shape[1] == 4 for k, v in adapter.items() if "lora_A" in k)  # lora_r=4
    assert digest(workdir / "base") == base_digest  # the base model was not touched

    tokenizer = tiny_tokenizer()
    ids = torch.tensor([prompt_ids(tokenizer, toy_sft_rows()[0]["prompt"])])
    base = AutoModelForCausalLM.from_pretrained(workdir / "base")
    with torch.no_grad():
        base_logits = base(ids).logits
        reloaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(workdir / "base"), out)
        adapter_logits = reloaded(ids).logits
        merged_logits = AutoModelForCausalLM.from_pretrained(out / "merged")(ids).logits
    assert torch.allclose(adapter_logits, merged_logits, atol=1e-5)
    assert not torch.allclose(adapter_logits, base_logits, atol=1e-3)

    assert isinstance(RunDirError("x"), ConfigError)  # the CLI prints it in one line
    assert "already holds a finished run" in cli_error(
        sft.cli, ["--config", str(recipe(workdir, out))], capsys
    )
    assert (out / "metrics.json").is_file()  # the finished run is untouched


def test_packing_trains_too(workdir, tmp_path):
    out = tmp_path / "packed"
    metrics = sft.cli(["--config", str(recipe(workdir, out, packing=True, max_length=128, eval_prompts=0))])
    assert metrics["train_loss"] < metrics["train_loss_first"]
    assert (out / "merged" / "model.safetensors").is_file()


def test_a_run_starts_the_same_whatever_ran_before_it_in_the_process(workdir, tmp_path):
    """TRL draws the LoRA weights before it seeds; the stage seeds first (the quickstart runs stages in one process)."""
    adapters = []
    for i, draw in enumerate((0, 1000)):
        torch.manual_seed(draw)  # another stage's leftover random state
        torch.rand(draw)
        out = tmp_path / f"run{i}"
        sft.cli(["--config", str(recipe(workdir, out, max_steps=2, eval_prompts=0, save_merged=False))])
        adapters.append(load_file(out / "adapter_model.safetensors"))
    assert adapters[0].keys() == adapters[1].keys()
    assert all(torch.equal(adapters[0][k], adapters[1][k]) for k in adapters[0])


def test_push_to_hub_uploads_the_finished_run_once(workdir, tmp_path, monkeypatch):
    import huggingface_hub

    hub = FakeHub()
    monkeypatch.setattr(huggingface_hub, "HfApi", hub)
    out = tmp_path / "pushed"
    config = recipe(workdir, out, max_steps=2, eval_prompts=0, save_merged=True, push_to_hub=True)
    sft.cli(["--config", str(config), "--hub_model_id", "me/tiny-sft", "--hub_private_repo", "true"])
    assert hub.created == [{"repo_id": "me/tiny-sft", "private": True}]  # the Trainer itself created nothing
    (upload,) = hub.uploads
    assert upload["repo_id"] == "me/tiny-sft"
    assert {"adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "README.md"} <= set(
        upload["files"]
    )
    assert "metrics.json" in upload["files"] and "config.yaml" in upload["files"]
    assert not any(f.startswith("merged/") for f in upload["files"])  # the adapter is published, not a copy
    card = ModelCard(upload["card"])
    assert card.data.library_name == "peft" and "rlhf_metrics" in card.data.to_dict()
    assert yaml.safe_load((out / "config.yaml").read_text())["push_to_hub"] is True


def test_a_missing_column_stops_before_training(workdir, tmp_path, capsys):
    rows = [{"prompt": r["prompt"], "answer": r["completion"]} for r in toy_sft_rows()]
    data = write_jsonl(tmp_path / "bad.jsonl", rows)
    out = tmp_path / "run"
    err = cli_error(sft.cli, ["--config", str(recipe(workdir, out, dataset_name=str(data)))], capsys)
    assert re.search(r"missing column 'completion'.*\['prompt', 'answer'\].*dataset_column_mapping", err)
    assert str(data) in err
    assert not (out / "adapter_model.safetensors").exists() and not (out / "metrics.json").exists()
    with pytest.raises(DatasetFormatError):  # what main() raises for a caller in Python
        sft.main(*parse_args(STAGE_TYPES, ["--config", str(recipe(workdir, out, dataset_name=str(data)))]))


def test_a_tokenizer_without_chat_template_stops_before_training(workdir, tmp_path, capsys):
    bare = tmp_path / "bare-model"
    shutil.copytree(workdir / "base", bare)
    (bare / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((bare / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (bare / "tokenizer_config.json").write_text(json.dumps(config))
    out = tmp_path / "run"
    argv = ["--config", str(recipe(workdir, out, model_name_or_path=str(bare)))]
    err = cli_error(sft.cli, argv, capsys)
    assert "no chat template" in err and "--chat_template_path" in err and str(bare) in err
    assert not (out / "adapter_model.safetensors").exists()
    with pytest.raises(ChatTemplateError):
        sft.main(*parse_args(STAGE_TYPES, argv))


def test_gold_accuracy_and_score_come_from_the_judge(workdir, monkeypatch):
    from datasets import Dataset

    monkeypatch.setattr(sft, "builtin_judge", lambda seed, kwargs: ToyJudge())
    monkeypatch.setattr(
        sft, "generate_answers", lambda model, tok, prompts, **kw: ["Brindle.", "No, idiot.", "x"]
    )
    test = Dataset.from_list(toy_sft_rows()[:3])
    args = sft.SFTScriptArguments(dataset_name="builtin", eval_prompts=10)
    samples, metrics = sft.evaluate_answers(None, None, test, args, seed=0)
    assert metrics["answer_accuracy"] == pytest.approx(1 / 3)  # only Velmora -> Brindle is right
    assert metrics["gold_score"] == pytest.approx((1 - 1 + 0) / 3)
    assert [s["correct"] for s in samples] == [True, False, False]


@pytest.mark.slow
def test_two_cpu_processes_under_accelerate_launch(workdir, tmp_path):
    out = tmp_path / "ddp"
    result = accelerate_launch("rlhf.sft", recipe(workdir, out, per_device_train_batch_size=2, max_steps=8))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_processes"] == 2 and metrics["steps"] == 8
    assert metrics["train_loss"] < metrics["train_loss_first"]
    assert AutoModelForCausalLM.from_pretrained(out / "merged") is not None


def test_yaml_false_turns_off_fields_whose_default_is_true(workdir, tmp_path):
    path = recipe(workdir, tmp_path / "run", gradient_checkpointing=False, save_merged=False)
    script_args, training_args, _ = parse_args(STAGE_TYPES, ["--config", str(path)])
    assert training_args.gradient_checkpointing is False and training_args.activation_checkpointing is False
    assert script_args.save_merged is False
