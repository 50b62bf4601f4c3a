"""The mean-pooled encoder classifier, the fast path's logistic head, the data mixture and its split."""

import json
import math

import pytest
import torch
from transformers import BertConfig

from rlhf.moderation.base import make_result
from rlhf.moderation.data import DatasetError
from rlhf.moderation.mixture import SPLITS, build_mixture, split_of, text_key
from rlhf.moderation.pooled import (
    MeanPoolClassifier,
    fit_linear_head,
    load_sequence_classifier,
    mean_pool,
    positive_weights,
)
from rlhf.moderation.report import result_scores


def tiny_bert_classifier(categories=("hate", "privacy")):
    config = BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        num_labels=len(categories), id2label=dict(enumerate(categories)),
        label2id={c: i for i, c in enumerate(categories)}, problem_type="multi_label_classification",
    )  # fmt: skip
    config.rlhf_pooling = "mean"
    torch.manual_seed(0)
    return MeanPoolClassifier(config)


def test_mean_pool_ignores_padding():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    assert mean_pool(hidden, torch.tensor([[1, 1, 0]])).tolist() == [[2.0, 3.0]]


def test_mean_pool_classifier_saves_reloads_and_weights_positives(tmp_path):
    model = tiny_bert_classifier().eval()
    ids = torch.tensor([[2, 7, 9, 3, 0], [2, 5, 3, 0, 0]])
    mask = (ids != 0).long()
    before = model(input_ids=ids, attention_mask=mask).logits
    model.save_pretrained(tmp_path)
    again = load_sequence_classifier(str(tmp_path)).eval()
    assert isinstance(again, MeanPoolClassifier)
    assert torch.allclose(again(input_ids=ids, attention_mask=mask).logits, before, atol=1e-6)
    # padding does not change a text's logits (mean over real tokens only)
    alone = again(input_ids=ids[1:, :3], attention_mask=mask[1:, :3]).logits
    assert torch.allclose(alone, before[1:], atol=1e-5)
    labels = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    plain = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    model.config.rlhf_pos_weight = [10.0, 1.0]
    weighted = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    assert weighted > plain  # the positive's error weighs 10x


def test_positive_weights_are_capped_ratios():
    labels = torch.tensor([[1, 0], [0, 0], [0, 0], [0, 1]] * 25, dtype=torch.float32)  # 25 / 100 and 25 / 100
    labels[:, 1] = 0
    labels[0, 1] = 1  # 1 positive in 100
    assert positive_weights(labels, cap=20.0).tolist() == pytest.approx([3.0, 20.0])


def test_fit_linear_head_separates_a_rare_category_on_raw_features():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(400, 8, generator=gen) * 5 + 3  # unstandardised features
    y = torch.stack([(x[:, 0] > 9).float(), (x[:, 1] - x[:, 2] > 0).float()], dim=1)  # ~12% and ~50%
    weight, bias = fit_linear_head(x, y, positive_weights(y))
    pred = (x @ weight.T + bias) > 0
    accuracy = (pred == y.bool()).float().mean(0)
    assert weight.shape == (2, 8) and bias.shape == (2,)
    assert accuracy[0] > 0.95 and accuracy[1] > 0.95


def write_source(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_mixture_maps_labels_caps_and_splits_without_shared_text(tmp_path):
    write_source(tmp_path / "a.jsonl", [{"t": f"request number {i}", "c": "x" if i % 3 else "y"} for i in range(300)]
                 + [{"t": "Request   Number 5", "c": "x"}, {"t": "", "c": "x"}])  # fmt: skip
    write_source(
        tmp_path / "b.jsonl", [{"q": f"question {i}"} for i in range(100)] + [{"q": "request number 7"}]
    )
    spec = {
        "data_root": str(tmp_path),
        "seed": 3,
        "sources": [
            {"name": "a", "path": "a.jsonl", "text_column": "t", "label_column": "c",
             "labels": {"x": ["hate", "privacy"], "y": "drop"}, "max_rows_per_label": 150},
            {"name": "b", "path": "b.jsonl", "text_column": "q", "default": "safe"},
        ],
    }  # fmt: skip
    splits = build_mixture(spec)
    assert set(splits) == set(SPLITS)
    rows = [r for name in SPLITS for r in splits[name]]
    keys = [text_key(r["text"]) for r in rows]
    assert len(keys) == len(set(keys))  # a text (folded case and spacing) is in one split only
    by_source = {s: [r for r in rows if r["source"] == s] for s in ("a", "b")}
    assert len(by_source["a"]) == 150  # label y dropped, x capped at 150 (duplicates and blanks gone)
    assert all(r["categories"] == ["hate", "privacy"] and r["unsafe"] == 1 for r in by_source["a"])
    assert len(by_source["b"]) <= 100 and all(
        r["unsafe"] == 0 and not r["categories"] for r in by_source["b"]
    )
    sizes = {name: len(splits[name]) for name in SPLITS}
    assert 0.6 < sizes["train"] / len(rows) < 0.8 and sizes["validation"] > 15 and sizes["test"] > 15
    assert build_mixture(spec) == splits  # seeded: same spec, same split
    assert split_of("Request number 9", 3, {"train": 0.7, "validation": 0.15, "test": 0.15}) == split_of(
        "request  number 9", 3, {"train": 0.7, "validation": 0.15, "test": 0.15}
    )


@pytest.mark.parametrize(
    "change, message",
    [
        ({"labels": {"x": "hate"}}, r"label 'y' of column 'c' has no entry"),
        ({"labels": {"x": 3, "y": "drop"}}, r"expected a category id"),
        ({"text_column": "nope"}, r"text_column 'nope' not in a.jsonl"),
        ({"path": "missing.jsonl"}, r"missing.jsonl' not found"),
        ({"colour": 1}, r"unknown key\(s\) \['colour'\]"),
    ],
)
def test_mixture_errors_name_the_source_and_field(tmp_path, change, message):
    write_source(tmp_path / "a.jsonl", [{"t": "one", "c": "x"}, {"t": "two", "c": "y"}])
    source = {
        "name": "a",
        "path": "a.jsonl",
        "text_column": "t",
        "label_column": "c",
        "labels": {"x": "hate", "y": "safe"},
    }
    source.update(change)
    with pytest.raises(DatasetError, match=r"dataset_mixture.sources\[0\][.:].*" + message):
        build_mixture({"data_root": str(tmp_path), "sources": [source]})


def test_overall_score_is_the_highest_category_score_whatever_the_thresholds():
    def result(scores, thresholds, decided_by=None):
        flags = {c: s >= thresholds for c, s in scores.items()}
        r = make_result(categories=flags, scores=scores, thresholds=None, reason="", backend="classifier",
                        latency_s=0.0, side="input")  # fmt: skip
        if decided_by:
            r.details["decided_by"] = decided_by
        return r

    low, high = result({"hate": 0.3, "privacy": 0.6}, 0.2), result({"hate": 0.3, "privacy": 0.6}, 0.9)
    assert (
        result_scores(low, ["hate", "privacy"])
        == result_scores(high, ["hate", "privacy"])
        == ([0.3, 0.6], 0.6)
    )
    by_rules = result({"hate": 0.3}, 0.2, decided_by="rules")  # flagged by a stage that gives no score
    assert result_scores(by_rules, ["hate"])[1] == 1.0
    assert not math.isnan(result_scores(high, ["hate"])[1])


def test_overall_scope_bounds_the_share_of_safe_items_any_category_flags():
    from rlhf.moderation.data import Examples
    from rlhf.moderation.evaluate import choose_thresholds

    # 10 safe items; category a's scores and b's scores put different safe items on top
    safe_a = [0.9, 0.8, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]
    safe_b = [0.1, 0.1, 0.9, 0.8, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]
    scores = [{"a": 0.95, "b": 0.0}, {"b": 0.95, "a": 0.0}] + [
        {"a": sa, "b": sb} for sa, sb in zip(safe_a, safe_b, strict=True)
    ]
    examples = Examples(
        texts=[str(i) for i in range(12)], sides=["input"] * 12, prompts=[""] * 12,
        labels=[[1, 0], [0, 1]] + [[0, 0]] * 10, unsafe=[1, 1] + [0] * 10, categories=["a", "b"],
    )  # fmt: skip
    results = [
        make_result(
            categories={},
            scores=s,
            thresholds=None,
            reason="",
            backend="classifier",
            latency_s=0.0,
            side="input",
        )  # fmt: skip
        for s in scores
    ]

    def flagged_safe(chosen):
        t = chosen["input"]
        return sum(1 for s in scores[2:] if s["a"] >= t["a"] or s["b"] >= t["b"]) / 10

    per_category = choose_thresholds(results, examples, 0.2)  # each category may flag 2 of 10
    overall = choose_thresholds(results, examples, 0.2, scope="overall")  # both together: 2 of 10
    assert per_category["input"] == {"a": 0.45, "b": 0.45} and flagged_safe(per_category) == 0.4
    assert overall["input"] == {"a": 0.85, "b": 0.85} and flagged_safe(overall) == 0.2
    with pytest.raises(ValueError, match="target_fpr_scope"):
        choose_thresholds(results, examples, 0.2, scope="side")


@pytest.fixture(scope="module")
def tiny_encoder_dir(tmp_path_factory):
    """A small pretrained-style encoder folder (BertModel + WordPiece tokenizer), as a Hub encoder would be."""
    from transformers import BertModel

    from rlhf.cli import main  # noqa: F401  (the stage modules import through the CLI as users run them)
    from rlhf.moderation.backbone import train_wordpiece_tokenizer
    from rlhf.moderation.data import build_examples, load_split

    path = tmp_path_factory.mktemp("encoder")
    texts = build_examples(load_split(str(FIXTURE), "train")).texts
    tokenizer = train_wordpiece_tokenizer(texts, vocab_size=400)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    torch.manual_seed(0)
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


FIXTURE = __import__("pathlib").Path(__file__).parent / "_fixtures" / "moderation"
ENCODER_ARGS = ["--dataset_name", str(FIXTURE), "--max_length", "48", "--per_device_train_batch_size", "16",
                "--save_strategy", "no", "--report_to", "none", "--logging_steps", "5"]  # fmt: skip


@pytest.mark.parametrize("mode", ["frozen", "full", "lora"])
def test_pretrained_encoder_trains_in_each_mode_and_serves_what_it_scored(tiny_encoder_dir, tmp_path, mode):
    from safetensors.torch import load_file

    from rlhf.cli import main as rlhf_main
    from rlhf.moderation import build_moderator, load_moderation_config

    out = tmp_path / mode
    extra = {
        "frozen": ["--train_mode", "frozen"],
        "full": ["--num_train_epochs", "2", "--learning_rate", "1e-3", "--probe_init", "false"],
        "lora": ["--num_train_epochs", "1", "--use_peft", "true", "--lora_r", "4", "--lora_target_modules",
                 "query", "--learning_rate", "1e-2"],
    }[mode]  # fmt: skip
    argv = ["moderation-train", "--model_name_or_path", str(tiny_encoder_dir), "--output_dir", str(out),
            "--dataset_validation_split", "test", "--target_fpr", "0.1", *ENCODER_ARGS, *extra]  # fmt: skip
    assert rlhf_main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    model = load_sequence_classifier(str(out))
    assert isinstance(model, MeanPoolClassifier) and model.config.rlhf_pooling == "mean"
    saved = load_file(out / "model.safetensors")
    start = load_file(tiny_encoder_dir / "model.safetensors")
    word = "embeddings.word_embeddings.weight"
    if mode == "frozen":  # only the head was fitted
        assert torch.equal(saved[f"encoder.{word}"], start[word])
        assert metrics["train_loss"] is None
    if mode == "lora":  # merged: the adapted projections changed, the rest of the encoder did not
        query = "encoder.layer.0.attention.self.query.weight"
        assert not torch.allclose(saved[f"encoder.{query}"], start[query])
        assert torch.equal(saved[f"encoder.{word}"], start[word])
    if mode == "full":  # trained with the class weights it recorded
        assert metrics["train_loss_last"] < metrics["train_loss_first"]
        assert not torch.equal(saved[f"encoder.{word}"], start[word])
        assert len(model.config.rlhf_pos_weight) == len(metrics["categories"])
    # the served moderation.yaml holds the thresholds chosen on the validation split, and reproduces the scores
    serve = load_moderation_config(out / "moderation.yaml")
    assert serve["classifier"]["thresholds"] == metrics["thresholds"] and "input" in metrics["thresholds"]
    moderator = build_moderator(serve)
    assert moderator.thresholds["input"] == {
        c: metrics["thresholds"]["input"].get(c, 0.5) for c in metrics["categories"]
    }
    # (a random encoder's features carry no meaning: how well the head learns is tested on real text)
