"""Evaluation functions: bootstrap intervals, KL, batched generation, reward scoring, tables."""

import copy
import math

import numpy as np
import pytest
import torch
from helpers import ToyJudge, good_answer, question, tiny_causal_lm, tiny_tokenizer
from peft import LoraConfig, get_peft_model
from transformers import LlamaForSequenceClassification

from rlhf.dataset_formats import conversation_ids, prompt_ids
from rlhf.reporting import markdown_table, prompt_text
from rlhf.sampling import decode_responses, generate_responses, kl_to_reference, sequence_logprobs
from rlhf.scoring import gold_rank_correlation, gold_scores, reward_of_responses, score_sequences
from rlhf.statistics import bootstrap_ci, kendall_tau_b, mean_rank_correlation, pairwise_accuracy


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is faster, and immune to a busy machine
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def model(tokenizer):
    return tiny_causal_lm(tokenizer, seed=1).eval()


PROMPTS = [
    [{"role": "user", "content": "Hi"}],
    [{"role": "user", "content": question("Velmora")}],
    [{"role": "user", "content": question("Quorland") + " Please answer in one short sentence, thanks."}],
    "What is the capital of Pentu?",
]


# ----------------------------------------------------------------------------------------------
# bootstrap


def test_bootstrap_of_a_constant_difference_is_that_constant():
    rl = [0.5, 1.0, 2.0, -1.0]
    sft = [v - 0.25 for v in rl]
    assert bootstrap_ci(rl, sft) == pytest.approx((0.25, 0.25, 0.25))


def test_bootstrap_interval_matches_the_normal_approximation_on_a_large_sample():
    rng = np.random.default_rng(1)
    diffs = rng.normal(0.3, 1.0, size=2000)
    mean, low, high = bootstrap_ci(diffs, n_resamples=4000, seed=0)
    se = diffs.std(ddof=1) / math.sqrt(len(diffs))
    assert mean == pytest.approx(diffs.mean())
    assert low == pytest.approx(mean - 1.96 * se, abs=0.01)
    assert high == pytest.approx(mean + 1.96 * se, abs=0.01)


def test_paired_bootstrap_sees_a_small_consistent_gain_that_unpaired_noise_would_hide():
    rng = np.random.default_rng(0)
    sft = rng.normal(0, 5, size=200)  # prompts differ a lot in difficulty...
    rl = sft + 0.1 + rng.normal(0, 0.05, size=200)  # ...but RL is better on each by ~0.1
    gain, low, high = bootstrap_ci(rl, sft)
    assert 0.08 < low < gain < high < 0.12  # sft's spread (sd 5) would swamp an unpaired comparison
    assert high - low < 0.03


def test_bootstrap_is_a_pure_function_of_inputs_and_seed():
    values = np.random.default_rng(0).normal(size=50)
    assert bootstrap_ci(values, seed=3) == bootstrap_ci(values, seed=3)
    assert bootstrap_ci(values, seed=3)[1:] != bootstrap_ci(values, seed=4)[1:]
    with pytest.raises(ValueError, match="equal lengths"):
        bootstrap_ci([1.0, 2.0], [1.0])
    assert all(math.isnan(v) for v in bootstrap_ci([]))


def test_bootstrap_by_group_widens_the_interval_when_items_of_a_group_move_together():
    rng = np.random.default_rng(0)
    facts = rng.normal(0.2, 1.0, size=60)  # a gain per fact...
    gains = np.repeat(facts, 2) + rng.normal(0, 0.01, size=120)  # ...asked by two prompts each
    groups = np.repeat(np.arange(60), 2)
    mean, low, high = bootstrap_ci(gains, groups=list(groups), seed=0)
    _, low_items, high_items = bootstrap_ci(gains, seed=0)
    assert mean == pytest.approx(gains.mean())
    # 60 independent facts, not 120 prompts: the interval is about sqrt(2) wider
    assert (high - low) / (high_items - low_items) == pytest.approx(math.sqrt(2), rel=0.15)
    se = facts.std(ddof=1) / math.sqrt(60)
    assert high - low == pytest.approx(2 * 1.96 * se, rel=0.1)
    # one item per group is the item bootstrap (the same distribution; groups are drawn in another order)
    assert bootstrap_ci(facts, groups=list(range(60)), seed=1) == pytest.approx(
        bootstrap_ci(facts, seed=1), abs=0.02
    )
    with pytest.raises(ValueError, match="one key per value"):
        bootstrap_ci([1.0, 2.0], groups=["a"])


def test_pairwise_accuracy_counts_strict_wins():
    assert pairwise_accuracy([1.0, 2.0, 0.0, 5.0], [0.0, 3.0, 0.0, 4.0]) == 0.5


# ----------------------------------------------------------------------------------------------
# tokens and generation


def test_prompt_and_conversation_ids_line_up(tokenizer):
    prompt = [{"role": "user", "content": question("Velmora")}]
    answer = [{"role": "assistant", "content": good_answer("Velmora")}]
    p, full = prompt_ids(tokenizer, prompt), conversation_ids(tokenizer, prompt, answer)
    assert full[: len(p)] == p
    assert full[-1] == tokenizer.eos_token_id  # cut after the end-of-turn token: the "\n" after it is dropped
    assert tokenizer.decode(full[len(p) :]) == good_answer("Velmora") + "<|end|>"
    assert prompt_ids(tokenizer, question("Velmora")) == p  # a plain string is a user turn


def test_batched_left_padded_generation_equals_one_prompt_at_a_time(model, tokenizer):
    batched = generate_responses(model, tokenizer, PROMPTS, max_new_tokens=12, batch_size=8)
    single = [generate_responses(model, tokenizer, [p], max_new_tokens=12, batch_size=1)[0] for p in PROMPTS]
    assert batched == single
    assert all(0 < len(r) <= 12 for r in batched)
    assert all(tokenizer.eos_token_id not in r[:-1] for r in batched)  # nothing kept after an EOS


def test_decoded_answers_drop_special_tokens_and_whitespace(tokenizer):
    ids = tokenizer(" The capital of Velmora is Brindle.", add_special_tokens=False)["input_ids"]
    assert decode_responses(tokenizer, [ids + [tokenizer.eos_token_id]]) == [
        "The capital of Velmora is Brindle."
    ]


def test_sampling_with_a_seed_is_repeatable_and_leaves_the_global_rng_alone(model, tokenizer):
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = generate_responses(model, tokenizer, PROMPTS, max_new_tokens=8, do_sample=True, seed=7)
    after = torch.rand(1)
    b = generate_responses(model, tokenizer, PROMPTS, max_new_tokens=8, do_sample=True, seed=7)
    assert a == b
    assert torch.equal(before, after)


# ----------------------------------------------------------------------------------------------
# log-probs and KL


def test_sequence_logprobs_match_a_manual_computation(model, tokenizer):
    prompt = PROMPTS[1]
    response = generate_responses(model, tokenizer, [prompt], max_new_tokens=6)[0]
    ids = torch.tensor([prompt_ids(tokenizer, prompt) + response])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0, :-1], -1)
    start = ids.shape[1] - len(response)
    manual = sum(logp[start - 1 + i, t].item() for i, t in enumerate(response))
    batched = sequence_logprobs(model, tokenizer, PROMPTS[:2] + [prompt], [[5], [5, 5], response])
    assert batched[2] == pytest.approx(manual, abs=1e-4)


def test_kl_of_identical_policies_is_zero(model, tokenizer):
    result = kl_to_reference(model, tokenizer, PROMPTS, reference=copy.deepcopy(model), max_new_tokens=8)
    assert result["kl"] == pytest.approx(0.0, abs=1e-6)
    assert len(result["kl_per_sample"]) == len(PROMPTS)


def test_kl_to_the_adapter_free_policy_is_zero_untrained_and_positive_once_the_adapter_moves(tokenizer):
    base = tiny_causal_lm(tokenizer, seed=2)
    policy = get_peft_model(
        base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", lora_dropout=0.0)
    )
    assert kl_to_reference(policy, tokenizer, PROMPTS, max_new_tokens=8)["kl"] == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        for name, param in policy.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    result = kl_to_reference(policy, tokenizer, PROMPTS, max_new_tokens=8, samples_per_prompt=4)
    assert result["kl"] > 0.01
    with pytest.raises(ValueError, match="reference"):
        kl_to_reference(tiny_causal_lm(tokenizer), tokenizer, PROMPTS)  # no adapter to switch off


# ----------------------------------------------------------------------------------------------
# scoring and reporting


def test_reward_scores_are_read_at_the_last_token_whatever_the_padding(tokenizer):
    torch.manual_seed(0)
    from helpers import tiny_llama_config

    config = tiny_llama_config(tokenizer)
    config.num_labels = 1
    reward_model = LlamaForSequenceClassification(config).eval()
    sequences = [prompt_ids(tokenizer, p) for p in PROMPTS]
    together = score_sequences(reward_model, sequences, tokenizer.pad_token_id, batch_size=8)
    alone = [score_sequences(reward_model, [s], tokenizer.pad_token_id)[0] for s in sequences]
    assert together == pytest.approx(alone, abs=1e-5)
    responses = [[10, 11, tokenizer.eos_token_id]] * len(PROMPTS)
    via_prompts = reward_of_responses(reward_model, tokenizer, PROMPTS, responses)
    direct = score_sequences(
        reward_model, [s + r for s, r in zip(sequences, responses, strict=True)], tokenizer.pad_token_id
    )
    assert via_prompts == pytest.approx(direct)


def test_gold_scores_use_the_judge_interface():
    prompts = [[{"role": "user", "content": question("Velmora")}]] * 3
    answers = [good_answer("Velmora"), "No idea, idiot.", "Brindle, you idiot."]
    assert gold_scores(ToyJudge(), prompts, answers) == {
        "score": [1.0, -1.0, 0.0],
        "correct": [True, False, True],
    }


def test_markdown_table_escapes_and_shortens():
    table = markdown_table([{"a": "x|y\nz", "b": 0.123456, "c": "w" * 50}], ["a", "b", "c"], max_chars=10)
    lines = table.splitlines()
    assert lines[0] == "| a | b | c |" and lines[1] == "|---|---|---|"
    assert lines[2] == "| x\\|y z | 0.123 | wwwwwwwww… |"
    assert prompt_text([{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]) == "q"


@pytest.mark.parametrize(
    ("x", "y", "tau"),
    [
        ([1, 2, 3, 4], [10, 20, 30, 40], 1.0),
        ([1, 2, 3, 4], [4, 3, 2, 1], -1.0),
        ([1, 2, 3], [1, 3, 2], 1 / 3),
        ([1, 1, 2], [1, 2, 3], 2 / math.sqrt(2 * 3)),  # a tie in x: tau-b, not tau-a
        ([1, 1, 1], [1, 2, 3], float("nan")),
    ],
)
def test_kendall_tau_b(x, y, tau):
    result = kendall_tau_b(x, y)
    assert (math.isnan(tau) and math.isnan(result)) or result == pytest.approx(tau)


def test_mean_rank_correlation_can_differ_from_pairwise_accuracy():
    gold = [[1.0, 0.4, -0.5, -1.0]] * 2
    # both prompts rank the best answer above the worst (a chosen/rejected pair of these would be right)...
    scores = [[3.0, 2.0, 1.0, 0.0], [3.0, -1.0, 1.0, 2.0]]
    assert all(pairwise_accuracy([s[0]], [s[-1]]) == 1.0 for s in scores)
    # ...but the second orders the middle answers wrongly
    assert mean_rank_correlation(scores, gold) == pytest.approx((1.0 + 0.0) / 2)
    assert math.isnan(mean_rank_correlation([[1.0, 2.0]], [[0.0, 0.0]]))


class _LengthReward(torch.nn.Module):
    """A stand-in reward model: the score is the sequence's length in tokens."""

    def __init__(self):
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask):
        return type("Output", (), {"logits": attention_mask.sum(1, keepdim=True).float()})()


def test_gold_rank_correlation_scores_every_answer_through_the_chat_template():
    tokenizer = tiny_tokenizer()
    rows = [
        {
            "prompt": [{"role": "user", "content": question("Ana")}],
            "answers": ["Oslo.", "Ana lives in Oslo, a city.", "No."],
            "gold": [3, 1, 2],
        },
        {
            "prompt": [{"role": "user", "content": question("Ben")}],
            "answers": ["Bergen.", "Ben lives in Bergen, far away."],
            "gold": [1, 2],
        },
    ]
    lengths = [
        [
            len(conversation_ids(tokenizer, r["prompt"], [{"role": "assistant", "content": a}]))
            for a in r["answers"]
        ]
        for r in rows
    ]
    expected = mean_rank_correlation(lengths, [r["gold"] for r in rows])
    assert gold_rank_correlation(_LengthReward(), tokenizer, rows) == pytest.approx(expected)
    # longer answers score higher here: the second prompt agrees with gold (+1), the first mostly disagrees
    assert expected == pytest.approx((kendall_tau_b(lengths[0], [3, 1, 2]) + 1.0) / 2)
