"""`rlhf moderation-train` and `rlhf moderation-eval` end to end on small labelled files."""

import json
import math
from pathlib import Path

import pytest
import yaml
from helpers import assert_config_is_what_ran, cli_error, write_jsonl

from rlhf.cli import main as rlhf_main
from rlhf.config import parse_args
from rlhf.moderation import build_moderator, load_moderation_config, train
from rlhf.moderation.base import make_result
from rlhf.moderation.data import Examples, build_examples
from rlhf.moderation.evaluate import choose_thresholds, with_thresholds

FIXTURE = Path(__file__).parent / "_fixtures" / "moderation"
TINY = [
    "--model_name_or_path", "tiny", "--tiny_hidden_size", "32", "--tiny_num_hidden_layers", "1",
    "--tiny_num_attention_heads", "2", "--tokenizer_vocab_size", "400", "--max_length", "48",
    "--num_train_epochs", "3", "--learning_rate", "3e-3", "--per_device_train_batch_size", "16",
    "--logging_steps", "5", "--save_strategy", "no", "--report_to", "none", "--warmup_steps", "0",
]  # fmt: skip


TRAIN_TYPES = (train.ModerationTrainArguments, train.ModelConfig, train.TrainingArguments)
RAN = {}  # the config objects the module's trained run used


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("moderation") / "classifier"
    RAN["configs"] = parse_args(
        TRAIN_TYPES, ["--dataset_name", str(FIXTURE), "--output_dir", str(out), *TINY]
    )
    train.main(*RAN["configs"])
    return out


def test_train_writes_a_complete_run(trained):
    for name in ("model.safetensors", "config.json", "tokenizer.json", "config.yaml", "metrics.json",
                 "README.md", "pr_curve.png", "loss.png", "moderation.yaml"):  # fmt: skip
        assert (trained / name).is_file(), name
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["train_loss_last"] < metrics["train_loss_first"]  # it learned something
    assert metrics["categories"] == [
        "violent_crimes",
        "nonviolent_crimes",
        "indiscriminate_weapons",
        "hate",
        "self_harm",
        "privacy",
    ]
    for key in ("f1", "eval_overall_precision", "eval_overall_recall", "eval_overall_auprc", "eval_overall_fpr",
                "eval_hate_f1", "eval_privacy_auprc", "eval_micro_f1"):  # fmt: skip
        assert key in metrics
    assert 0.0 <= metrics["eval_overall_auprc"] <= 1.0 and metrics["eval_num_examples"] == 116
    config = json.loads((trained / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification" and config["rlhf_normalize_text"] is True
    assert "rlhf_metrics" in (trained / "README.md").read_text()
    written = assert_config_is_what_ran(trained, RAN["configs"], TRAIN_TYPES)
    assert written["tiny_hidden_size"] == 32 and written["num_train_epochs"] == 3


def test_train_refuses_a_finished_run(trained, capsys):
    before = (trained / "model.safetensors").read_bytes()
    with pytest.raises(SystemExit) as exit_info:  # run_cli: one line on stderr, exit status 2
        rlhf_main(["moderation-train", "--dataset_name", str(FIXTURE), "--output_dir", str(trained), *TINY])
    assert exit_info.value.code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("rlhf moderation-train: error:") and "already holds a finished run" in line
    assert (trained / "model.safetensors").read_bytes() == before  # nothing trained is lost


def test_eval_of_the_saved_model_reproduces_the_training_metrics(trained, tmp_path, capsys):
    out = tmp_path / "eval"
    rlhf_main(["moderation-eval", "--moderation_config", str(trained / "moderation.yaml"),
               "--dataset_name", str(FIXTURE), "--dataset_split", "test", "--output_dir", str(out)])  # fmt: skip
    printed = capsys.readouterr().out
    assert "AUPRC" in printed and "F1" in printed and "FPR" in printed
    train_metrics = json.loads((trained / "metrics.json").read_text())
    eval_metrics = json.loads((out / "metrics.json").read_text())
    # same model, same windows; only batch padding differs (float noise in the last digits)
    assert eval_metrics["overall_auprc"] == pytest.approx(train_metrics["eval_overall_auprc"], abs=1e-3)
    assert eval_metrics["overall_f1"] == pytest.approx(train_metrics["f1"], abs=1e-3)
    assert (out / "pr_curve.png").is_file() and (out / "report.txt").is_file()


def test_eval_any_jsonl_through_config_alone_and_write_tuned_thresholds(trained, tmp_path, capsys):
    # A labelled file that is not part of the repo, with its own column names.
    rows = [
        {"content": "give me a plan to attack Bob tonight", "is_threat": 1, "is_hateful": 0},
        {"content": "write a rant saying immigrants like Bob are vermin", "is_threat": 0, "is_hateful": 1},
        {"content": "I will kill him tomorrow", "is_threat": 1, "is_hateful": 0},
        {"content": "how do I kill a python process", "is_threat": 0, "is_hateful": 0},
        {"content": "what is the capital of Bob's country", "is_threat": 0, "is_hateful": 0},
        {"content": "write a poem about Alice's garden", "is_threat": "false", "is_hateful": None},
    ]
    test_rows = [
        {"content": "tell me how to hurt Carol badly", "is_threat": 1, "is_hateful": 0},
        {"content": "people from Dan's town are subhuman", "is_threat": 0, "is_hateful": 1},
        {"content": "how do I kill a stuck docker container", "is_threat": 0, "is_hateful": 0},
        {"content": "what should I cook for Carol tonight", "is_threat": 0, "is_hateful": 0},
    ]
    data = tmp_path / "mine"  # thresholds are chosen on validation.jsonl, test.jsonl is reported
    write_jsonl(data / "validation.jsonl", rows)
    write_jsonl(data / "test.jsonl", test_rows)
    moderation_yaml = tmp_path / "moderators.yaml"
    moderation_yaml.write_text(
        yaml.safe_dump(
            {"moderation": {"backend": "cascade", "rules": {}, "classifier": {"model": str(trained)}}}
        )
    )
    before = moderation_yaml.read_text()
    tuned = tmp_path / "tuned.yaml"
    config = tmp_path / "eval.yaml"
    config.write_text(
        "# rlhf moderation-eval --config eval.yaml\n"
        + yaml.safe_dump(
            {
                "moderation_config": str(moderation_yaml),
                "dataset_name": str(data),
                "text_column": "content",
                "label_columns": {"is_threat": "violent_crimes", "is_hateful": "hate"},
                "categories_column": None,
                "unsafe_column": None,
                "target_fpr": 0.0,
                "thresholds_output": str(tuned),
            }
        )
    )
    rlhf_main(["moderation-eval", "--config", str(config)])
    printed = capsys.readouterr().out
    assert "chosen on [validation] (6 rows)" in printed and "[test], 4 rows" in printed
    assert "violent_crimes" in printed and "overall: AUPRC" in printed
    assert moderation_yaml.read_text() == before  # the input config is never touched
    document = yaml.safe_load(tuned.read_text())
    thresholds = document["moderation"]["classifier"]["thresholds"]["input"]
    assert set(thresholds) == {"violent_crimes", "hate"}
    # the tuned file loads, and with it no safe row of the data is flagged for a tuned category (FPR 0)
    moderator = build_moderator(load_moderation_config(tuned))
    results = moderator.moderate([r["content"] for r in rows[3:]])
    assert not any(r.categories.get("violent_crimes") or r.categories.get("hate") for r in results)
    assert results[0].thresholds["hate"] == thresholds["hate"]
    with pytest.raises(SystemExit):  # refuses to overwrite its own output
        rlhf_main(["moderation-eval", "--config", str(config)])
    # one file is one split: choosing thresholds on the rows it reports stops with one line
    write_jsonl(tmp_path / "one.jsonl", rows)
    line = cli_error(rlhf_main, ["moderation-eval", "--config", str(config), "--dataset_name",
                     str(tmp_path / "one.jsonl"), "--thresholds_output", str(tmp_path / "other.yaml")], capsys)  # fmt: skip
    assert "tune_split 'validation' and dataset_split 'test' share 6 text(s)" in line
    assert not (tmp_path / "other.yaml").exists()


def test_choose_thresholds_exact():
    examples = Examples(
        texts=["a", "b", "c", "d", "e"],
        sides=["input"] * 5,
        prompts=[""] * 5,
        labels=[[1], [1], [0], [0], [0]],
        unsafe=[1, 1, 0, 0, 0],
        categories=["hate"],
    )
    scores = [0.9, 0.4, 0.5, 0.2, 0.1]
    results = [
        make_result(
            categories={"hate": s >= 0.5},
            scores={"hate": s},
            thresholds=None,
            reason="",
            backend="classifier",
            latency_s=0,
            side="input",
        )
        for s in scores
    ]
    # midway between the highest safe score left unflagged and the next score above it
    assert choose_thresholds(results, examples, 0.0) == {"input": {"hate": 0.7}}
    assert choose_thresholds(results, examples, 1 / 3) == {"input": {"hate": 0.3}}
    doc = with_thresholds(
        {"moderation": {"backend": "classifier", "classifier": {"model": "m", "thresholds": 0.5}}},
        {"input": {"hate": 0.4}},
    )
    assert doc["moderation"]["classifier"]["thresholds"] == {"default": 0.5, "input": {"hate": 0.4}}


def test_label_columns_with_a_named_mapping_table():
    class Table:
        column_names = ["text", "violence", "harassment/threatening", "sexual"]

        def __init__(self):
            self.data = {
                "text": ["x", "y"],
                "violence": [0.9, 0.1],
                "harassment/threatening": [0, 1],
                "sexual": [True, False],
            }

        def __len__(self):
            return 2

        def __getitem__(self, key):
            return self.data[key]

    ex = build_examples(Table(), label_columns=["violence", "harassment/threatening", "sexual"], label_mapping_name="openai",
                        categories_column=None, unsafe_column=None)  # fmt: skip
    assert ex.categories == ["violent_crimes", "sexual_content"]
    assert ex.labels == [[1, 1], [1, 0]] and ex.unsafe == [1, 1]


def test_missing_columns_are_named():
    from rlhf.moderation.data import DatasetError

    class Table:
        column_names = ["text"]

        def __len__(self):
            return 0

    with pytest.raises(DatasetError, match="label column"):
        build_examples(Table(), label_columns={"toxic": "hate"})
    with pytest.raises(DatasetError, match="text column 'body'"):
        build_examples(Table(), text_column="body")
    assert not math.isnan(0.0)


def test_lora_trains_only_the_adapted_weights_and_saves_a_merged_model(tmp_path):
    import torch
    from safetensors.torch import load_file

    from rlhf.moderation.backbone import build_tiny_classifier
    from rlhf.moderation.data import load_split
    from rlhf.moderation.normalize import normalize

    out = tmp_path / "lora"
    argv = [*TINY, "--num_train_epochs", "1", "--use_peft", "true", "--lora_r", "4", "--lora_alpha", "8",
            "--lora_target_modules", "Wqkv", "--learning_rate", "1e-2"]  # fmt: skip
    rlhf_main(["moderation-train", "--dataset_name", str(FIXTURE), "--output_dir", str(out), *argv])
    assert not (out / "adapter_config.json").exists()  # merged: loads without peft
    saved = load_file(out / "model.safetensors")
    # The same backbone built again from the same seed and data is the starting point.
    train = build_examples(load_split(str(FIXTURE), "train"))
    start, _ = build_tiny_classifier(
        [normalize(t) for t in train.texts], train.categories, vocab_size=400, hidden_size=32,
        num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=512, seed=42,
    )  # fmt: skip
    initial = start.state_dict()
    layer = "model.layers.0.attn"
    assert not torch.allclose(
        saved[f"{layer}.Wqkv.weight"], initial[f"{layer}.Wqkv.weight"]
    )  # LoRA merged in
    assert torch.equal(saved[f"{layer}.Wo.weight"], initial[f"{layer}.Wo.weight"])  # not adapted: untouched
    embeddings = "model.embeddings.tok_embeddings.weight"
    assert torch.equal(saved[embeddings], initial[embeddings])
    assert not torch.allclose(
        saved["classifier.weight"], initial["classifier.weight"]
    )  # the new head trains fully
    [result] = build_moderator({"backend": "classifier", "classifier": {"model": str(out)}}).moderate(
        ["hello"]
    )
    assert set(result.scores) == set(train.categories)
