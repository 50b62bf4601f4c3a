"""The tokenizer stage: byte-level BPE round trip, single-id special tokens, chat template, reload."""

import json
from pathlib import Path

import pytest
from helpers import assert_config_is_what_ran
from transformers import AutoTokenizer

from rlhf.corpus import load_text_corpus
from rlhf.tokenizer import SPECIAL_TOKENS, TokenizerArguments, bytes_per_token, main, train_tokenizer

CORPUS = Path(__file__).parent / "_fixtures" / "tiny_corpus.jsonl"
TEXTS = [json.loads(line)["text"] for line in CORPUS.read_text().splitlines()]


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(TEXTS, vocab_size=400)


def test_round_trip_on_seen_and_unseen_text(tokenizer):
    for text in [TEXTS[0], "Zoë wrote 3 naïve lines\n\twith tabs, emoji 🙂 and <html>.", "  leading spaces"]:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids) == text
    # merges were learnt: the corpus compresses well beyond one byte per token
    assert bytes_per_token(tokenizer, TEXTS) > 2.5
    assert 300 < len(tokenizer) <= 400


def test_special_tokens_are_single_ids(tokenizer):
    ids = [tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS]
    assert ids == list(range(len(SPECIAL_TOKENS)))
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == (
        "<|endoftext|>",
        "<|end|>",
        "<|pad|>",
    )
    for token, token_id in zip(SPECIAL_TOKENS, ids, strict=True):
        assert tokenizer(f"x{token}y", add_special_tokens=False)["input_ids"][1] == token_id
    # adding special tokens adds nothing (no automatic bos/eos): the caller decides
    assert tokenizer("Alice")["input_ids"] == tokenizer("Alice", add_special_tokens=False)["input_ids"]
    assert tokenizer.padding_side == "right"


def test_chat_template(tokenizer):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Where does Alice live?"},
        {"role": "assistant", "content": "Alice lives in Paris."},
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    assert text == (
        "<|system|>\nBe brief.<|end|>\n<|user|>\nWhere does Alice live?<|end|>\n"
        "<|assistant|>\nAlice lives in Paris.<|end|>\n"
    )
    prompt = tokenizer.apply_chat_template(messages[1:2], tokenize=False, add_generation_prompt=True)
    assert prompt == "<|user|>\nWhere does Alice live?<|end|>\n<|assistant|>\n"
    # the assistant mask covers exactly the answer and its <|end|>
    out = tokenizer.apply_chat_template(messages[1:], return_dict=True, return_assistant_tokens_mask=True)
    answer_ids = [i for i, m in zip(out["input_ids"], out["assistant_masks"], strict=True) if m]
    assert tokenizer.decode(answer_ids) == "Alice lives in Paris.<|end|>"


def test_stage_saves_a_directory_autotokenizer_loads(tmp_path):
    out = tmp_path / "tok"
    args = TokenizerArguments(dataset_name=str(CORPUS), vocab_size=400, output_dir=str(out))
    metrics = main(args)
    reloaded = AutoTokenizer.from_pretrained(out)
    train_texts = list(
        load_text_corpus(str(CORPUS))["train"]["text"]
    )  # the stage holds out 5% for validation
    assert reloaded.get_vocab() == train_tokenizer(train_texts, vocab_size=400).get_vocab()
    assert reloaded.padding_side == "right" and reloaded.eos_token == "<|end|>" and reloaded.pad_token_id == 1
    assert (
        reloaded.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
        == "<|user|>\nhi<|end|>\n"
    )
    text = "Hiro works as a miner."
    assert reloaded.decode(reloaded(text)["input_ids"]) == text
    assert metrics["vocab_size"] == len(reloaded) and metrics["bytes_per_token"] > 2.5
    assert (out / "metrics.json").is_file()
    assert assert_config_is_what_ran(out, [args], (TokenizerArguments,))["vocab_size"] == 400
    # a finished run is never overwritten by accident
    with pytest.raises(Exception, match="already holds a finished run"):
        main(TokenizerArguments(dataset_name=str(CORPUS), vocab_size=400, output_dir=str(out)))
