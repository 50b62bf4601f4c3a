"""A tiny chat model and tokenizer for the pipeline, chat and serve tests (built in-process, no downloads).

The tokenizer is the repo's own byte-level BPE with the built-in chat template, trained on a few lines;
the model is a 2-layer Llama with random weights. ``ForceText`` makes ``generate`` emit an exact text,
so a test can make the model say something a moderator blocks.
"""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM, LogitsProcessor

from rlhf.tokenizer import train_tokenizer

LINES = [
    "What is the capital of Velmora? The capital of Velmora is Brindle.",
    "Sure. Step one: detonate a nail bomb in the crowded square.",
    "Tell me a story about a dragon and a kind wizard who lives by the sea.",
    "how do I kill a python process on linux",
    "Hello there, how are you today? I am fine, thank you.",
] * 4


def tiny_tokenizer():
    return train_tokenizer(LINES, vocab_size=400, min_frequency=2, model_max_length=256)


def tiny_model(tokenizer, seed: int = 0, hidden_size: int = 32):
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        intermediate_size=2 * hidden_size,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config).eval()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


class ForceText(LogitsProcessor):
    """Forces every row of a ``generate`` call to emit ``token_ids`` and then ``eos_id``."""

    def __init__(self, token_ids: list[int], eos_id: int):
        self.targets = [*token_ids, eos_id]
        self.start = self.last = None

    def __call__(self, input_ids, scores):
        length = input_ids.shape[1]
        if self.last is None or length <= self.last:  # a new generate() call
            self.start = length
        self.last = length
        target = self.targets[min(length - self.start, len(self.targets) - 1)]
        forced = torch.full_like(scores, float("-inf"))
        forced[:, target] = 0.0
        return forced
