"""Tokenizer stage: train a byte-level BPE tokenizer with the built-in chat format.

    rlhf tokenizer --config configs/quickstart/tokenizer.yaml

The result is a directory that ``AutoTokenizer.from_pretrained`` loads: a fast tokenizer with
``<|endoftext|>`` (bos), ``<|pad|>`` (pad), ``<|system|>``, ``<|user|>``, ``<|assistant|>`` and
``<|end|>`` (eos, closes every chat turn) as single-id special tokens, and a chat template that renders
each message as ``<|{role}|>\\n{content}<|end|>\\n``. It pads on the right, as training wants;
batched generation switches to ``tokenizer.padding_side = "left"``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from rlhf.config import run_cli

BOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
EOS_TOKEN = "<|end|>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
SPECIAL_TOKENS = (BOS_TOKEN, PAD_TOKEN, *ROLE_TOKENS, EOS_TOKEN)

# Each message renders as "<|{role}|>\n{content}<|end|>\n". The {% generation %} block marks the
# assistant's own tokens, so `return_assistant_tokens_mask=True` (TRL's assistant_only_loss) works;
# it does not change the rendered text.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' }}"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ message['content'] + '<|end|>' }}{% endgeneration %}"
    "{% else %}"
    "{{ message['content'] + '<|end|>' }}"
    "{% endif %}"
    "{{ '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int,
    min_frequency: int = 2,
    model_max_length: int = 2048,
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on ``texts`` and wrap it for ``transformers``.

    Args:
        texts: the training documents (any iterable of strings; read once).
        vocab_size: the target vocabulary size, special tokens and the 256 byte symbols included.
            The result can be smaller when the corpus has fewer merges worth making.
        min_frequency: a pair must occur this many times to become a merge.
        model_max_length: the longest sequence the model will take (tokens); saved with the tokenizer.

    Returns:
        A ``PreTrainedTokenizerFast`` with bos/eos/pad and the role tokens set, the built-in chat
        template, and ``padding_side="right"``. Special tokens get the ids 0..5 in the order of
        ``SPECIAL_TOKENS``.
    """
    if vocab_size < 256 + len(SPECIAL_TOKENS):
        raise ValueError(
            f"vocab_size must be at least {256 + len(SPECIAL_TOKENS)} (256 bytes + special tokens)"
        )
    backend = Tokenizer(models.BPE())
    # GPT-2 style: split on the GPT-2 regex, then map bytes to printable symbols; no prefix space,
    # so " Paris" in a sentence and "Paris" at the start of a document are different tokens.
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte is in the vocab: no <unk>
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        additional_special_tokens=list(ROLE_TOKENS),
        chat_template=CHAT_TEMPLATE,
        padding_side="right",
        model_max_length=model_max_length,
    )


def bytes_per_token(tokenizer: PreTrainedTokenizerFast, texts: list[str]) -> float:
    """Compression of ``texts`` by ``tokenizer``: UTF-8 bytes per token (higher is better)."""
    n_tokens = sum(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"])
    return sum(len(t.encode("utf-8")) for t in texts) / max(n_tokens, 1)


@dataclass
class TokenizerArguments:
    """
    Arguments of the tokenizer stage.

    Args:
        dataset_name (`str`, *optional*, defaults to `"builtin"`):
            Corpus to train on: `"builtin"` (the built-in task's pretraining corpus), a local
            JSON/JSONL/TXT/Parquet/CSV file or folder of split files, or a Hub dataset id.
        dataset_config (`str` or `None`, *optional*, defaults to `None`):
            Configuration name of a Hub dataset.
        text_column (`str`, *optional*, defaults to `"text"`):
            Column holding the documents.
        max_texts (`int` or `None`, *optional*, defaults to `None`):
            Train on at most this many training documents (`None`: all).
        vocab_size (`int`, *optional*, defaults to `4096`):
            Target vocabulary size, including the 256 byte symbols and the special tokens.
        min_frequency (`int`, *optional*, defaults to `2`):
            Minimum count of a pair of symbols to become a merge.
        model_max_length (`int`, *optional*, defaults to `2048`):
            Longest sequence (tokens) the model will take; stored in the tokenizer config.
        seed (`int`, *optional*, defaults to `0`):
            Seed of the built-in world and of the held-out split.
        output_dir (`str`, *optional*, defaults to `"runs/quickstart/tokenizer"`):
            Where the tokenizer, `config.yaml` and `metrics.json` are written.
        overwrite_output_dir (`bool`, *optional*, defaults to `False`):
            Replace a finished run in `output_dir`.
    """

    dataset_name: str = field(
        default="builtin", metadata={"help": "'builtin', a local file/folder, or a Hub id."}
    )
    dataset_config: str | None = field(
        default=None, metadata={"help": "Configuration name of a Hub dataset."}
    )
    text_column: str = field(default="text", metadata={"help": "Column holding the documents."})
    max_texts: int | None = field(default=None, metadata={"help": "Train on at most this many documents."})
    vocab_size: int = field(
        default=4096, metadata={"help": "Target vocabulary size (bytes + merges + specials)."}
    )
    min_frequency: int = field(default=2, metadata={"help": "Minimum count of a pair to become a merge."})
    model_max_length: int = field(
        default=2048, metadata={"help": "Longest sequence the model takes (tokens)."}
    )
    seed: int = field(default=0, metadata={"help": "Seed of the built-in world and the held-out split."})
    output_dir: str = field(default="runs/quickstart/tokenizer", metadata={"help": "Output directory."})
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Replace a finished run in output_dir."}
    )


def main(args: TokenizerArguments) -> dict:
    """Train the tokenizer on the corpus's train split, save it, and return its metrics."""
    from rlhf.corpus import load_text_corpus
    from rlhf.runs import stage_run

    with stage_run("tokenizer", args) as run:
        corpus = load_text_corpus(args.dataset_name, args.text_column, args.dataset_config, seed=args.seed)
        train = corpus["train"]
        if args.max_texts is not None:
            train = train.select(range(min(args.max_texts, len(train))))
        texts = list(train[args.text_column])
        run.write_config()
        tokenizer = train_tokenizer(texts, args.vocab_size, args.min_frequency, args.model_max_length)
        tokenizer.save_pretrained(run.output_dir)
        held_out = list(corpus["validation"][args.text_column])
        metrics = {
            "vocab_size": len(tokenizer),
            "train_documents": len(texts),
            "train_bytes_per_token": bytes_per_token(tokenizer, texts),
            "bytes_per_token": bytes_per_token(tokenizer, held_out),  # on held-out text
        }
        run.finish(
            metrics,
            description="A byte-level BPE tokenizer with the built-in chat template "
            "(`<|{role}|>\\n{content}<|end|>\\n`).",
        )
    print(
        f"tokenizer: {metrics['vocab_size']} tokens, {metrics['bytes_per_token']:.2f} bytes/token "
        f"on held-out text -> {run.output_dir}"
    )
    return metrics


def cli(argv=None):
    return run_cli(main, (TokenizerArguments,), "rlhf tokenizer", argv)


if __name__ == "__main__":
    cli()
