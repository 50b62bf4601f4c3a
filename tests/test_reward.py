"""The reward stage on a tiny model: it separates a toy preference set, and its outputs reload."""

import hashlib
import json
import re
from pathlib import Path

import pytest
import torch
import yaml
from datasets import Dataset
from helpers import (
    FakeHub,
    accelerate_launch,
    assert_config_is_what_ran,
    cli_error,
    save_tiny_base,
    tiny_tokenizer,
    toy_preference_rows,
    write_jsonl,
    write_toy_splits,
)
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, set_seed

from rlhf import preference_eval, reward
from rlhf.config import parse_args
from rlhf.dataset_formats import conversation_ids
from rlhf.datasets import DatasetFormatError
from rlhf.models import load_reward_model
from rlhf.scoring import score_sequences

STAGE_TYPES = (reward.RewardScriptArguments, reward.RewardConfig, reward.ModelConfig)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("reward")
    save_tiny_base(root / "base")
    write_toy_splits(root / "data", toy_preference_rows(repeats=2), n_test=8)
    return root


def recipe(workdir: Path, output_dir: Path, **overrides) -> Path:
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
        "max_steps": 20,
        "per_device_train_batch_size": 8,
        "logging_steps": 5,
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
        "seed": 42,
        **overrides,
    }
    path = output_dir.parent / f"{output_dir.name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_reward_model_separates_a_toy_preference_set_and_reloads(workdir, tmp_path):
    out = tmp_path / "run"
    digest = hashlib.sha256((workdir / "base" / "model.safetensors").read_bytes()).hexdigest()
    tokenizer = tiny_tokenizer()
    test = Dataset.from_list(toy_preference_rows(repeats=2)[-8:])
    chosen = [conversation_ids(tokenizer, r["prompt"], r["chosen"]) for r in test]
    rejected = [conversation_ids(tokenizer, r["prompt"], r["rejected"]) for r in test]
    set_seed(42)  # the stage seeds the same way, so this is the head it starts from
    untrained = load_reward_model(str(workdir / "base"), pad_token_id=tokenizer.pad_token_id)
    margin_before = sum(
        c - r
        for c, r in zip(
            score_sequences(untrained, chosen, 1), score_sequences(untrained, rejected, 1), strict=True
        )
    )

    configs = parse_args(STAGE_TYPES, ["--config", str(recipe(workdir, out))])
    metrics = reward.main(*configs)

    # the stage turned ModelConfig's lora_task_type (CAUSAL_LM) into SEQ_CLS before training: config.yaml says so
    assert assert_config_is_what_ran(out, configs, STAGE_TYPES)["lora_task_type"] == "SEQ_CLS"
    assert metrics["pairwise_accuracy"] >= 0.875  # 8 held-out pairs; chance is 0.5
    assert metrics["mean_margin"] > 1.0 and metrics["mean_margin"] > margin_before / 8 + 1.0
    assert metrics["train_loss"] < 0.5 * metrics["train_loss_first"]
    # no gold judge for local data
    assert metrics["eval_pairs"] == 8 and "gold_rank_correlation" not in metrics
    assert json.loads((out / "metrics.json").read_text())["pairwise_accuracy"] == metrics["pairwise_accuracy"]
    assert (out / "rewards.png").stat().st_size > 0 and (out / "loss.png").stat().st_size > 0
    assert "Held-out pairs" in (out / "README.md").read_text()

    adapter = load_file(out / "adapter_model.safetensors")
    assert any("score" in k for k in adapter)  # the head is trained and saved with the adapter
    assert hashlib.sha256((workdir / "base" / "model.safetensors").read_bytes()).hexdigest() == digest

    merged = AutoModelForSequenceClassification.from_pretrained(out / "merged")
    assert merged.config.num_labels == 1 and merged.config.pad_token_id == tokenizer.pad_token_id
    assert not torch.allclose(merged.score.weight, untrained.score.weight)
    pairs = [json.loads(line) for line in (out / "pairs.jsonl").read_text().splitlines()]
    rescored = score_sequences(merged, chosen, tokenizer.pad_token_id)
    assert rescored == pytest.approx([p["reward_chosen"] for p in pairs], abs=1e-4)


def test_raw_hh_rlhf_jsonl_trains_a_reward_model_through_config_alone(workdir, tmp_path):
    rows = [
        {
            "chosen": f"\n\nHuman: {r['prompt'][0]['content']}\n\nAssistant: {r['chosen'][0]['content']}",
            "rejected": f"\n\nHuman: {r['prompt'][0]['content']}\n\nAssistant: {r['rejected'][0]['content']}",
        }
        for r in toy_preference_rows(repeats=2)
    ]
    data = write_jsonl(tmp_path / "hh.jsonl", rows)
    out = tmp_path / "hh-run"
    metrics = reward.cli(
        ["--config", str(recipe(workdir, out, dataset_name=str(data), holdout_fraction=0.25))]
    )
    assert metrics["eval_pairs"] == 6 and metrics["pairwise_accuracy"] >= 0.8


def test_push_to_hub_uploads_the_finished_run_once(workdir, tmp_path, monkeypatch):
    import huggingface_hub

    hub = FakeHub()
    monkeypatch.setattr(huggingface_hub, "HfApi", hub)
    out = tmp_path / "pushed-rm"
    reward.cli(["--config", str(recipe(workdir, out, max_steps=2, push_to_hub=True))])
    assert hub.created == [{"repo_id": "pushed-rm", "private": None}]  # default name: the output directory's
    (upload,) = hub.uploads
    assert upload["repo_id"] == "someone/pushed-rm"
    assert {"adapter_model.safetensors", "README.md", "rewards.png", "metrics.json"} <= set(upload["files"])
    assert not any(f.startswith("merged/") for f in upload["files"])


def test_a_missing_column_stops_before_training(workdir, tmp_path, capsys):
    rows = [
        {"prompt": r["prompt"], "good": r["chosen"], "rejected": r["rejected"]} for r in toy_preference_rows()
    ]
    data = write_jsonl(tmp_path / "bad.jsonl", rows)
    argv = ["--config", str(recipe(workdir, tmp_path / "run", dataset_name=str(data)))]
    err = cli_error(reward.cli, argv, capsys)
    assert re.search(
        r"missing column 'chosen'.*\['prompt', 'good', 'rejected'\].*dataset_column_mapping", err
    )
    assert not (tmp_path / "run" / "adapter_model.safetensors").exists()
    with pytest.raises(DatasetFormatError):
        reward.main(*parse_args(STAGE_TYPES, argv))


def test_a_tokenizer_without_chat_template_stops_before_training(workdir, tmp_path, capsys):
    bare = tmp_path / "bare-tokenizer"
    tokenizer = tiny_tokenizer()
    tokenizer.chat_template = None
    tokenizer.save_pretrained(bare)
    out = tmp_path / "run"
    argv = ["--config", str(recipe(workdir, out, tokenizer_name_or_path=str(bare)))]
    err = cli_error(reward.cli, argv, capsys)
    assert "no chat template" in err and "--chat_template_path" in err
    assert not (out / "adapter_model.safetensors").exists() and not (out / "config.yaml").exists()


def test_held_out_metrics_on_the_builtin_task_rank_every_answer_against_the_gold_judge(monkeypatch):
    # two pairs scored, then two answer sets of three answers: the model orders the first set as the judge
    # does and the second in reverse, while both pairs are won (accuracy 1.0, rank correlation 0.0)
    sets = [
        {"prompt": [{"role": "user", "content": "q1"}], "answers": ["a", "b", "c"], "gold": [1.0, 0.0, -1.0]},
        {"prompt": [{"role": "user", "content": "q2"}], "answers": ["a", "b", "c"], "gold": [1.0, 0.0, -1.0]},
    ]
    monkeypatch.setattr(
        preference_eval, "answer_sets", lambda split, seed, **kw: sets if split == "validation" else []
    )
    scores = iter([[2.0, 1.0], [1.0, 0.0], [3.0, 2.0, 1.0, 1.0, 2.0, 3.0]])  # chosen, rejected, answer sets
    monkeypatch.setattr(preference_eval, "score_sequences", lambda model, seqs, pad, bs: next(scores))
    monkeypatch.setattr("rlhf.scoring.score_sequences", lambda model, seqs, pad, bs: next(scores))
    tokenizer = tiny_tokenizer()
    test = preference_eval.tokenize_pairs(Dataset.from_list(toy_preference_rows()[:2]), tokenizer)
    args = reward.RewardScriptArguments(dataset_name="builtin", dataset_test_split="validation")
    _, metrics = preference_eval.evaluate_pairs(None, tokenizer, test, args)
    assert metrics["pairwise_accuracy"] == 1.0
    assert metrics["gold_answer_sets"] == 2 and metrics["gold_rank_correlation"] == pytest.approx(0.0)
    assert metrics["mean_margin"] == pytest.approx(1.0)
    # `eval_pairs` caps the answer sets too (a short run must not score every held-out question's answers)
    scores = iter([[2.0], [1.0], [3.0, 2.0, 1.0]])
    args.eval_pairs = 1
    _, metrics = preference_eval.evaluate_pairs(None, tokenizer, test, args)
    assert metrics["gold_answer_sets"] == 1 and metrics["gold_rank_correlation"] == pytest.approx(1.0)


@pytest.mark.slow
def test_two_cpu_processes_under_accelerate_launch(workdir, tmp_path):
    out = tmp_path / "ddp"
    result = accelerate_launch("rlhf.reward", recipe(workdir, out, per_device_train_batch_size=4))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_processes"] == 2 and metrics["pairwise_accuracy"] >= 0.75
    assert AutoModelForSequenceClassification.from_pretrained(out / "merged").config.num_labels == 1
