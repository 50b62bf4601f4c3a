"""Classifier backend: sigmoid vs softmax, label maps, windows (worst counts), per-side thresholds, loading."""

from types import SimpleNamespace

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, PretrainedConfig

from rlhf.moderation import ModerationConfigError, build_moderator
from rlhf.moderation.backbone import train_wordpiece_tokenizer
from rlhf.moderation.classifier import (
    MULTI_LABEL,
    SINGLE_LABEL,
    ClassifierModerator,
    category_matrix,
    category_scores,
    label_scores,
    resolve_thresholds,
)

WORDS = [
    "hello",
    "world",
    "the",
    "a",
    "cat",
    "sat",
    "on",
    "mat",
    "bomb",
    "steal",
    "hate",
    "address",
    "number",
    "please",
    "kindly",
]


@pytest.fixture(scope="module")
def tokenizer():
    return train_wordpiece_tokenizer([" ".join(WORDS)] * 20, vocab_size=200)


class KeywordModel(torch.nn.Module):
    """Label k's logit is ``hit`` when its keyword token is in the (unpadded) input, else ``miss``."""

    def __init__(self, tokenizer, keywords, problem_type=MULTI_LABEL, hit=4.0, miss=-4.0):
        super().__init__()
        labels = list(keywords)
        self.config = PretrainedConfig(
            id2label=dict(enumerate(labels)),
            label2id={v: k for k, v in enumerate(labels)},
            problem_type=problem_type,
        )
        self.token_ids = [tokenizer.convert_tokens_to_ids(w) if w else -1 for w in keywords.values()]
        self.hit, self.miss = hit, miss
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # so the moderator finds a device
        self.calls = []

    def forward(self, input_ids, attention_mask=None):
        self.calls.append(input_ids.shape)
        mask = (
            attention_mask.bool()
            if attention_mask is not None
            else torch.ones_like(input_ids, dtype=torch.bool)
        )
        logits = torch.full((input_ids.shape[0], len(self.token_ids)), self.miss)
        for k, tid in enumerate(self.token_ids):
            logits[((input_ids == tid) & mask).any(dim=1), k] = self.hit
        return SimpleNamespace(logits=logits)


def test_sigmoid_for_multi_label_softmax_for_single_label():
    logits = torch.tensor([[2.0, 2.0, -1.0]])
    multi = label_scores(logits, MULTI_LABEL)
    single = label_scores(logits, SINGLE_LABEL)
    assert multi.tolist()[0] == pytest.approx([0.880797, 0.880797, 0.268941], abs=1e-6)  # independent
    assert single.sum().item() == pytest.approx(1.0)
    assert single.tolist()[0] == pytest.approx([0.487856, 0.487856, 0.024289], abs=1e-6)


def test_category_scores_max_for_multi_label_sum_for_single_label():
    categories, matrix = category_matrix(
        {0: "a", 1: "b", 2: "safe"}, {"a": ["hate"], "b": ["hate"], "safe": []}
    )
    assert categories == ["hate"]
    probs = torch.tensor([[0.3, 0.4, 0.3]])
    assert category_scores(probs, matrix, MULTI_LABEL).item() == pytest.approx(0.4)  # highest label
    assert category_scores(probs, matrix, SINGLE_LABEL).item() == pytest.approx(
        0.7
    )  # exclusive labels add up


def test_real_model_scores_use_its_problem_type(tokenizer):
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        num_labels=3, id2label={0: "hate", 1: "privacy", 2: "self_harm"}, label2id={"hate": 0, "privacy": 1, "self_harm": 2},
    )  # fmt: skip
    model = BertForSequenceClassification(config).eval()
    text = "the cat sat on the mat"
    with torch.no_grad():
        logits = model(**tokenizer(text, return_tensors="pt")).logits[0]
    model.config.problem_type = MULTI_LABEL
    multi = ClassifierModerator(model, tokenizer).moderate([text])[0].scores
    assert list(multi.values()) == pytest.approx(torch.sigmoid(logits).tolist(), abs=1e-6)
    model.config.problem_type = SINGLE_LABEL
    single = ClassifierModerator(model, tokenizer).moderate([text])[0].scores
    assert list(single.values()) == pytest.approx(torch.softmax(logits, -1).tolist(), abs=1e-6)
    assert sum(single.values()) == pytest.approx(1.0)


def test_long_text_worst_window_counts_wherever_the_keyword_sits(tokenizer):
    model = KeywordModel(tokenizer, {"indiscriminate_weapons": "bomb"})
    moderator = ClassifierModerator(model, tokenizer, max_length=16, stride=4, batch_size=8)
    texts = [" ".join(["hello"] * i + ["bomb"] + ["world"] * (60 - i)) for i in range(61)]
    results = moderator.moderate(texts)
    assert all(r.flagged for r in results)
    assert all(shape[1] <= 16 for shape in model.calls)  # no window is longer than max_length
    # The same texts cut to one window (plain truncation) would miss most keywords.
    truncated = [tokenizer.decode(tokenizer(t, truncation=True, max_length=16)["input_ids"]) for t in texts]
    assert sum(r.flagged for r in moderator.moderate(truncated)) < 20
    assert not moderator.moderate([" ".join(["hello"] * 200)])[0].flagged


def test_thresholds_per_category_and_side(tokenizer):
    # sigmoid(1) = 0.731 for a present keyword
    model = KeywordModel(tokenizer, {"hate": "hate", "privacy": "address"}, hit=1.0, miss=-3.0)
    thresholds = {"default": 0.5, "hate": 0.8, "output": {"privacy": 0.75}}
    moderator = ClassifierModerator(model, tokenizer, thresholds=thresholds)
    text = "hate the address"
    [inp] = moderator.moderate([text], side="input")
    [out] = moderator.moderate([text], side="output")
    assert inp.categories == {"hate": False, "privacy": True}
    assert out.categories == {"hate": False, "privacy": False}
    assert inp.thresholds == {"hate": 0.8, "privacy": 0.5} and out.thresholds == {
        "hate": 0.8,
        "privacy": 0.75,
    }
    assert inp.scores["privacy"] == pytest.approx(0.731059, abs=1e-6)
    assert "privacy 0.73 >= 0.50" in inp.reason


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (None, {"input": {"a": 0.5, "b": 0.5}, "output": {"a": 0.5, "b": 0.5}}),
        (0.3, {"input": {"a": 0.3, "b": 0.3}, "output": {"a": 0.3, "b": 0.3}}),
        ({"a": 0.9, "output": 0.2}, {"input": {"a": 0.9, "b": 0.5}, "output": {"a": 0.2, "b": 0.2}}),
        (
            {"default": 0.4, "input": {"b": 0.1}},
            {"input": {"a": 0.4, "b": 0.1}, "output": {"a": 0.4, "b": 0.4}},
        ),
    ],
)
def test_resolve_thresholds(spec, expected):
    assert resolve_thresholds(spec, ["a", "b"]) == expected


def test_resolve_thresholds_rejects_unknown_keys():
    with pytest.raises(ModerationConfigError, match="unknown key"):
        resolve_thresholds({"hat": 0.3}, ["hate"])


def test_label_map_from_a_named_table_and_unmapped_labels(tokenizer):
    model = KeywordModel(tokenizer, {"S10": "hate", "S7": "address", "safe": ""}, problem_type=SINGLE_LABEL)
    with pytest.raises(ModerationConfigError, match="safe"):
        ClassifierModerator(model, tokenizer, label_map={"S10": ["hate"], "S7": ["privacy"]})
    moderator = ClassifierModerator(
        model, tokenizer, label_map={"S10": ["hate"], "S7": ["privacy"], "safe": []}
    )
    [hit, miss] = moderator.moderate(["please hate", "the cat"])
    assert moderator.categories == ["hate", "privacy"]
    assert hit.categories == {"hate": True, "privacy": False} and not miss.flagged
    # softmax over (4, -4, -4): the keyword's label takes almost everything
    assert hit.scores["hate"] == pytest.approx(1 / (1 + 2 * torch.exp(torch.tensor(-8.0)).item()), abs=1e-6)


def test_batches_and_conversations_keep_order(tokenizer):
    model = KeywordModel(tokenizer, {"nonviolent_crimes": "steal"})
    moderator = ClassifierModerator(model, tokenizer, batch_size=2)
    items = [
        "hello",
        "steal",
        [{"role": "user", "content": "steal"}, {"role": "assistant", "content": "the cat sat"}],
        "world steal",
        "mat",
    ]
    assert [r.flagged for r in moderator.moderate(items, side="output")] == [False, True, False, True, False]
    assert [r.flagged for r in moderator.moderate(items, side="input")] == [False, True, True, True, False]


def test_build_moderator_loads_a_saved_model_and_applies_its_normalisation(tokenizer, tmp_path):
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        num_labels=1, id2label={0: "hate"}, label2id={"hate": 0}, problem_type=MULTI_LABEL,
    )  # fmt: skip
    model = BertForSequenceClassification(config)
    model.config.rlhf_normalize_text = True
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    moderator = build_moderator(
        {"backend": "classifier", "classifier": {"model": str(tmp_path), "thresholds": 0.0}}
    )
    plain, disguised = moderator.moderate(["the cat hate", "thе сat hаte"])  # Cyrillic е, с, а
    assert plain.flagged and plain.scores == pytest.approx(disguised.scores)
    assert plain.backend == "classifier" and plain.latency_s >= 0


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(ModerationConfigError, match="moderation-train"):
        build_moderator({"backend": "classifier", "classifier": {"model": str(tmp_path / "nope")}})
    with pytest.raises(ModerationConfigError, match="needs a 'classifier:' mapping"):
        build_moderator({"backend": "classifier"})


def test_empty_text_is_scored_safe_without_calling_the_model():
    """Empty or blank text has nothing to judge: every category scores 0.0 and nothing is flagged, also
    with a tokenizer that adds no special tokens (where "" is zero tokens and the model used to raise)."""
    from _tiny_chat import tiny_tokenizer
    from transformers import LlamaConfig, LlamaForSequenceClassification

    tok = tiny_tokenizer()
    assert tok("")["input_ids"] == []  # the case that raised a RuntimeError inside the model
    labels = ["hate", "violent_crimes"]
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        pad_token_id=tok.pad_token_id, id2label=dict(enumerate(labels)), label2id={c: i for i, c in enumerate(labels)},
        problem_type=MULTI_LABEL,
    )  # fmt: skip
    torch.manual_seed(0)
    moderator = ClassifierModerator(LlamaForSequenceClassification(config).eval(), tok, thresholds=0.0)
    blank = ["", "   ", " \n\t"]
    for batch in (blank, [[{"role": "user", "content": ""}]], ["", "hello there", " "]):
        results = moderator.moderate(batch)
        assert len(results) == len(batch)
        for item, result in zip(batch, results, strict=True):
            if isinstance(item, list) or not item.strip():
                assert result.scores == {"hate": 0.0, "violent_crimes": 0.0}
                assert not result.flagged and result.action == "allow"  # safe even at threshold 0.0
            else:  # real text went through the model (threshold 0.0 flags any score)
                assert result.flagged and 0.0 < result.scores["hate"] < 1.0
    assert moderator.moderate([]) == []
