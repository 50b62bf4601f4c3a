"""Reward-model evaluation beyond TRL: no pair dropped for length, baselines, intervals that resample prompts,
and the real-data recipe's config run small (tiny model, tens of pairs, a few steps)."""

import json
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from helpers import COUNTRIES, good_answer, question, save_tiny_base, tiny_tokenizer

from rlhf import reward
from rlhf.preference_eval import (
    accuracy_by_prompt,
    compare_with_baselines,
    fit_pairs,
    mean_answer_logprobs,
    pair_wins,
    tokenize_pairs,
)

RECIPE = Path(__file__).resolve().parents[1] / "configs" / "smollm2-135m-real" / "reward.yaml"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def chat_pair(prompt: str, chosen: str, rejected: str) -> dict:
    return {
        "prompt": [{"role": "user", "content": prompt}],
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
    }


def test_too_long_pairs_lose_prompt_tokens_from_the_left_and_none_is_dropped():
    tokenizer = tiny_tokenizer()
    long_prompt = " ".join(question(c) for c in COUNTRIES)  # far longer than 40 tokens
    rows = [chat_pair(long_prompt, good_answer("Velmora"), "No."), chat_pair("Hi?", "Hello.", "Go away.")]
    rows.append(chat_pair("Hi?", "Hello. " * 30, "No."))  # an answer alone longer than max_length
    pairs = tokenize_pairs(Dataset.from_list(rows), tokenizer)
    fitted, counts = fit_pairs(pairs, max_length=40, split="eval")
    assert counts == {
        "eval_pairs": 3,
        "eval_pairs_truncated": 2,
        "eval_answers_truncated": 1,
        "eval_pairs_dropped": 0,
    }
    assert all(len(ids) <= 40 for side in ("chosen_ids", "rejected_ids") for ids in fitted[side])
    first, before = fitted[0], pairs[0]
    answer = before["chosen_ids"][before["chosen_start"] :]
    assert first["chosen_ids"][-len(answer) :] == answer  # the whole answer, and the end-of-turn token, kept
    assert first["chosen_ids"] == before["chosen_ids"][-40:]  # what was cut is the start of the prompt
    assert first["chosen_ids"][first["chosen_start"] :] == answer
    assert fitted[1] == pairs[1]  # short pairs are untouched
    _, none = fit_pairs(pairs, max_length=None, split="train")
    assert none["train_pairs_truncated"] == 0 and none["train_pairs_dropped"] == 0


def test_mean_answer_logprob_counts_only_the_answer_tokens():
    class Uniform(torch.nn.Module):  # every next token equally likely, except token 7 after token 3
        def forward(self, input_ids, attention_mask):
            logits = torch.zeros(*input_ids.shape, 10)
            logits[..., 7] += 5.0 * (input_ids == 3)
            return type("Out", (), {"logits": logits})()

    model = Uniform()
    model.parameters = lambda: iter([torch.zeros(1)])
    scores = mean_answer_logprobs(model, [[1, 2, 3, 7], [1, 3, 2, 5]], starts=[3, 3], pad_token_id=0)
    likely = torch.log_softmax(torch.tensor([0.0] * 7 + [5.0] + [0.0] * 2), 0)
    assert scores[0] == pytest.approx(float(likely[7]))  # only token 7 (after 3) is an answer token
    assert scores[1] == pytest.approx(-torch.log(torch.tensor(10.0)).item())


def test_accuracy_interval_resamples_prompts_not_pairs():
    assert list(pair_wins([2, 1, 1], [1, 1, 2])) == [1.0, 0.5, 0.0]  # a tie counts half
    groups = ["a"] * 20 + ["b"] * 20
    wins = [1.0] * 20 + [0.0] * 20  # one prompt all right, the other all wrong
    acc, low, high = accuracy_by_prompt(wins, [0.5] * 40, groups)
    assert acc == 0.5 and low == 0.0 and high == 1.0  # two prompts: the interval spans everything
    _, pair_low, pair_high = accuracy_by_prompt(wins, [0.5] * 40, list(range(40)))
    assert 0.3 < pair_low < 0.5 < pair_high < 0.7  # treating the 40 pairs as independent is far narrower


def test_the_verdict_says_when_the_reward_model_does_not_beat_a_baseline():
    groups = [f"p{i}" for i in range(60)]
    chosen_len, rejected_len = [10] * 60, [5] * 60  # the longer answer always wins
    good = ([1.0] * 54 + [0.0] * 6, [0.5] * 60)  # 0.9 accuracy
    report = compare_with_baselines(good, {"longer_answer": (chosen_len, rejected_len)}, groups)
    assert report["baseline_longer_answer_accuracy"] == 1.0
    assert not report["beats_baselines"] and "does NOT beat" in report["verdict"]
    report = compare_with_baselines(good, {"longer_answer": (rejected_len, chosen_len)}, groups)
    assert report["beats_baselines"] and 0.8 < report["accuracy_ci_low"] < 0.9 < report["accuracy_ci_high"]


def test_real_recipe_config_small_learns_what_length_cannot(tmp_path):
    """The real recipe's reward.yaml with a tiny model and files written here in its two formats (PandaLM votes,
    and MT-Bench's pairwise labels, pooled): the chosen answer is the right one and the shorter one, so "the
    longer answer wins" is always wrong, and the reward model must beat it."""
    save_tiny_base(tmp_path / "base")
    votes_rows, pairwise_rows = [], []
    for i, c in enumerate(list(COUNTRIES) * 3):
        wrong = list(COUNTRIES.values())[(i + 3) % len(COUNTRIES)]
        long_wrong = f"The capital of {c} is {wrong}, I guess, or maybe not, who knows."
        label = 1 + i % 2  # which response is the right one
        first, second = (good_answer(c), long_wrong) if label == 1 else (long_wrong, good_answer(c))
        if c in list(COUNTRIES)[:8]:
            votes = (label, label, 0) if i % 3 else (label, label, label)
            votes_rows.append(
                {"instruction": question(c), "input": "", "response1": first, "response2": second,
                 **{f"annotator{k}": str(v) for k, v in enumerate(votes, start=1)}}
            )  # fmt: skip
        else:
            pairwise_rows.append(
                {"input": question(c), "output_1": first, "output_2": second, "label": label}
            )
    votes_rows.append({**votes_rows[0], "instruction": "A tie.", "annotator1": "0", "annotator2": "0"})
    (tmp_path / "votes.json").write_text(json.dumps(votes_rows))
    (tmp_path / "judgments.json").write_text(json.dumps(pairwise_rows))
    out = tmp_path / "run"
    argv = [
        "--config", str(RECIPE), "--model_name_or_path", str(tmp_path / "base"),
        "--dataset_name", str(tmp_path / "votes.json"), "--dataset_mixture", str(tmp_path / "judgments.json"),
        "--output_dir", str(out), "--max_steps", "20", "--learning_rate", "0.01", "--warmup_steps", "0",
        "--max_length", "48", "--lora_r", "8", "--lora_alpha", "16", "--lora_dropout", "0.0",
        "--per_device_train_batch_size", "8", "--gradient_accumulation_steps", "1", "--logging_steps", "5",
        "--holdout_fraction", "0.25", "--validation_fraction", "0.2", "--seed", "42",
    ]  # fmt: skip
    metrics = reward.cli(argv)

    assert metrics["data_rows_read"] == 37 and metrics["data_ties"] == 1
    assert metrics["eval_split"] == "test" and metrics["eval_pairs_dropped"] == 0
    assert metrics["eval_pairs"] == metrics["data_test_rows"] >= 9  # every held-out pair scored
    assert metrics["baseline_longer_answer_accuracy"] == 0.0
    assert 0.0 <= metrics["baseline_base_logprob_accuracy"] <= 1.0
    assert metrics["pairwise_accuracy"] >= 0.8 and metrics["beats_baselines"]
    assert metrics["accuracy_ci_low"] <= metrics["pairwise_accuracy"] <= metrics["accuracy_ci_high"]
    split = json.loads((out / "split.json").read_text())
    assert split["shared_across_splits"] == {"prompts": 0, "answers": 0}
    assert {"train.jsonl", "validation.jsonl", "test.jsonl"} <= {p.name for p in (out / "split").iterdir()}
    assert metrics["verdict"] in (out / "README.md").read_text()
    assert json.loads((out / "metrics.json").read_text())["beats_baselines"] is True
