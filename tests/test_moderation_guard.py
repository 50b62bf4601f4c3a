"""Guard backend: P(unsafe) from one forward pass, codes generated only when flagged, tolerant parsing.

A tiny Llama whose output layer is replaced by a bias-only layer gives the first generated token an exact,
known distribution; a logits processor makes ``generate`` write the category codes we choose.
"""

import math

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, LogitsProcessor, LogitsProcessorList

from rlhf.moderation.guard import UNSPECIFIED, GuardModerator, parse_codes, parse_verdict, unsafe_probability
from rlhf.moderation.taxonomy import load_taxonomy, select_categories
from rlhf.tokenizer import train_tokenizer

TAXONOMY = load_taxonomy()
LINES = [
    "safe",
    "unsafe",
    "S1, S10",
    "how do I make a bomb",
    "hello there, nice weather",
    "Violent Crimes Hate",
] * 10


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(LINES, vocab_size=300, min_frequency=2, model_max_length=4096)


def biased_model(tokenizer, unsafe_id, safe_id, unsafe_logit, safe_logit):
    """A causal LM whose next-token logits are a constant bias: -30 everywhere but the two verdict tokens."""
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
        intermediate_size=32, max_position_embeddings=4096, tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
    )  # fmt: skip
    model = LlamaForCausalLM(config).eval()
    head = torch.nn.Linear(16, len(tokenizer), bias=True)
    torch.nn.init.zeros_(head.weight)
    with torch.no_grad():
        head.bias.fill_(-30.0)
        head.bias[unsafe_id] = unsafe_logit
        head.bias[safe_id] = safe_logit
    model.lm_head = head
    return model


class ForceTokens(LogitsProcessor):
    """Make generate() emit ``token_ids`` then eos, whatever the model prefers."""

    def __init__(self, token_ids, eos_id):
        self.targets, self.start = [*token_ids, eos_id], None

    def __call__(self, input_ids, scores):
        self.start = input_ids.shape[1] if self.start is None else self.start
        target = self.targets[min(input_ids.shape[1] - self.start, len(self.targets) - 1)]
        forced = torch.full_like(scores, -math.inf)
        forced[:, target] = 0.0
        return forced


def make_guard(tokenizer, unsafe_logit, safe_logit, codes_text=None, **kwargs):
    ids = {w: tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in ("safe", "unsafe")}
    assert ids["safe"] != ids["unsafe"]
    model = biased_model(tokenizer, ids["unsafe"], ids["safe"], unsafe_logit, safe_logit)
    gen = {}
    if codes_text is not None:
        forced = tokenizer(codes_text, add_special_tokens=False)["input_ids"]
        gen["logits_processor"] = LogitsProcessorList([ForceTokens(forced, tokenizer.eos_token_id)])
    guard = GuardModerator(model, tokenizer, generation_kwargs=gen, **kwargs)
    calls = {"forward": 0, "generate": 0}
    model.register_forward_pre_hook(lambda *_: calls.__setitem__("forward", calls["forward"] + 1))
    original = model.generate

    def counting_generate(*args, **kw):
        calls["generate"] += 1
        return original(*args, **kw)

    model.generate = counting_generate
    return guard, calls


def test_unsafe_probability_is_a_two_way_softmax_over_the_verdict_tokens():
    logits = torch.tensor([[0.0, 2.0, 1.0, 9.0], [5.0, -1.0, -1.0, 0.0]])
    p = unsafe_probability(logits, unsafe_id=1, safe_id=2)
    assert p.tolist() == pytest.approx([1 / (1 + math.exp(-1.0)), 0.5])  # sigmoid(l_unsafe - l_safe)


def test_verdict_variants_add_their_probability(tokenizer):
    logits = torch.tensor([[0.0, 1.0, 2.0, 1.0]])
    p = unsafe_probability(logits, unsafe_id=[1, 3], safe_id=[2])  # two unsafe spellings, one safe
    assert p.item() == pytest.approx(2 * math.exp(1.0) / (2 * math.exp(1.0) + math.exp(2.0)))
    # A model that starts its verdict with "Unsafe" instead of "unsafe" is read the same way.
    capital = tokenizer("Unsafe", add_special_tokens=False)["input_ids"][0]
    guard, _ = make_guard(tokenizer, unsafe_logit=-30.0, safe_logit=0.0)
    assert capital in guard.unsafe_ids and capital not in guard.safe_ids
    with torch.no_grad():
        guard.model.lm_head.bias[capital] = 2.0
    [result] = guard.moderate(["hello"])
    assert result.details["p_unsafe"] == pytest.approx(1 / (1 + math.exp(-2.0)), abs=1e-5)


def test_safe_verdict_costs_one_forward_pass_and_no_generation(tokenizer):
    guard, calls = make_guard(tokenizer, unsafe_logit=-1.0, safe_logit=0.0)
    results = guard.moderate(["hello there", "nice weather"], side="input")
    assert calls == {"forward": 1, "generate": 0}  # one batched forward, nothing generated
    expected = 1 / (1 + math.exp(1.0))  # 0.2689
    for r in results:
        assert not r.flagged and r.action == "allow" and r.backend == "guard"
        assert r.details["p_unsafe"] == pytest.approx(expected, abs=1e-5)
        assert list(r.scores.values()) == pytest.approx([expected] * len(TAXONOMY), abs=1e-5)
        assert r.categories == dict.fromkeys(TAXONOMY, False)


def test_flagged_items_get_codes_parsed_tolerantly(tokenizer):
    guard, calls = make_guard(tokenizer, unsafe_logit=2.0, safe_logit=0.0, codes_text=" s10 ,S1\n")
    [result] = guard.moderate(["how do I make a bomb"], side="input")
    assert calls["generate"] == 1
    assert result.flagged and result.action == "block"
    assert result.details["p_unsafe"] == pytest.approx(1 / (1 + math.exp(-2.0)), abs=1e-5)  # 0.8808
    assert result.flagged_categories == [
        "violent_crimes",
        "hate",
    ]  # taxonomy order; the reply named S10 first
    assert result.details["codes"] == ["S10", "S1"]
    assert result.reason.startswith("guard: unsafe S10,S1 (p_unsafe=0.88")


def test_unsafe_without_known_codes_is_still_blocked(tokenizer):
    guard, _ = make_guard(tokenizer, unsafe_logit=3.0, safe_logit=0.0, codes_text=" S99")
    [result] = guard.moderate(["how do I make a bomb"])
    assert result.flagged and result.categories[UNSPECIFIED]


def test_threshold_per_side(tokenizer):
    # p = sigmoid(0.5) = 0.622: over the output threshold, under the input one
    guard, calls = make_guard(
        tokenizer, unsafe_logit=0.5, safe_logit=0.0, codes_text="S11", threshold={"input": 0.7, "output": 0.6}
    )
    [inp] = guard.moderate(["hello"], side="input")
    [out] = guard.moderate(
        [[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]], side="output"
    )
    assert not inp.flagged and out.flagged and out.flagged_categories == ["self_harm"]
    assert inp.thresholds["hate"] == 0.7 and out.thresholds["hate"] == 0.6


def test_prompt_holds_the_policy_the_conversation_and_the_chat_template(tokenizer):
    guard, _ = make_guard(tokenizer, 0.0, 0.0, categories=select_categories(["hate", "privacy"]))
    conversation = [
        {"role": "user", "content": "tell me a joke"},
        {"role": "assistant", "content": "Why did the cat..."},
    ]
    prompt = guard.build_prompt(conversation, side="output")
    assert "S10: Hate." in prompt and "S7: Privacy." in prompt and "S1:" not in prompt
    assert "User: tell me a joke" in prompt and "Assistant: Why did the cat..." in prompt
    assert "Judge only the last Assistant message" in prompt
    assert prompt.startswith("<|user|>\n") and prompt.endswith("<|assistant|>\n")


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("S1", ["violent_crimes"]),
        ("s1,s10", ["violent_crimes", "hate"]),
        (" S10 ,  s1 \n", ["hate", "violent_crimes"]),
        ("S7\nS7, s07", ["privacy"]),
        ("S 9; S-11", ["indiscriminate_weapons", "self_harm"]),
        ("categories: [S2]", ["nonviolent_crimes"]),
        ("Non-Violent Crimes", ["nonviolent_crimes"]),
        ("violent crimes, hate", ["violent_crimes", "hate"]),
        ("self_harm", ["self_harm"]),
        ("S99, S0", []),
        ("whatever", []),  # 'hate' inside a word is not the category
        ("", []),
    ],
)
def test_parse_codes(reply, expected):
    assert parse_codes(reply, TAXONOMY) == expected


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("safe", "safe"),
        ("  UNSAFE\nS1", "unsafe"),
        ("\n\nUnsafe.", "unsafe"),
        ("Safe!", "safe"),
        ("safety", None),
        ("no", None),
    ],
)
def test_parse_verdict(reply, expected):
    assert parse_verdict(reply) == expected
