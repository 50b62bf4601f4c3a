"""A pretrained encoder with a mean-pooled linear head, and the frozen-encoder fast path that fits that head.

Why mean pooling: sentence encoders such as all-MiniLM-L6-v2 were trained so that the *average* of their
token vectors carries the meaning of a text. ``BertForSequenceClassification`` instead classifies the
[CLS] vector through BERT's pooler (a dense + tanh layer from masked-LM pretraining that the sentence
training never used), so a fresh head starts from features that barely separate the categories.

:class:`MeanPoolClassifier` keeps the encoder's own config (``rlhf_pooling: mean`` marks it) and saves like
any ``transformers`` model; :func:`load_sequence_classifier` loads it or any ordinary classifier.
:func:`fit_linear_head` is the fast path: a weighted logistic regression per category on frozen pooled
embeddings (full-batch L-BFGS, seconds on a CPU).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

POOLING_KEY = "rlhf_pooling"


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average of the token vectors where ``attention_mask`` is 1: (batch, seq, dim) -> (batch, dim)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


class MeanPoolClassifier(PreTrainedModel):
    """Any ``AutoModel`` encoder + dropout + one linear layer over its mean-pooled token vectors.

    ``config`` is the encoder's config with the label keys (``num_labels``, ``id2label``, ``problem_type``)
    and ``rlhf_pooling="mean"``. The loss (multi-label) is binary cross-entropy with the per-category
    ``pos_weight`` stored in ``config.rlhf_pos_weight`` (None: unweighted).
    """

    base_model_prefix = "encoder"
    supports_gradient_checkpointing = True
    _supports_sdpa = True  # attention is the wrapped encoder's; these only let its choice through
    _supports_flash_attn = True
    _supports_flex_attn = True

    def __init__(self, config, encoder: nn.Module | None = None):
        super().__init__(config)
        self.encoder = encoder if encoder is not None else AutoModel.from_config(config)
        self.dropout = nn.Dropout(getattr(config, "hidden_dropout_prob", 0.1) or 0.0)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def _init_weights(self, module):
        if module is getattr(self, "classifier", None):
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)

    def pooled(self, input_ids, attention_mask=None, **kwargs) -> torch.Tensor:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state
        return mean_pool(hidden, attention_mask)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        extra = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        logits = self.classifier(self.dropout(self.pooled(input_ids, attention_mask, **extra)))
        loss = None
        if labels is not None:
            weight = getattr(self.config, "rlhf_pos_weight", None)
            pos_weight = torch.tensor(weight, device=logits.device, dtype=logits.dtype) if weight else None
            loss = nn.functional.binary_cross_entropy_with_logits(
                logits, labels.to(logits.dtype), pos_weight=pos_weight
            )
        return SequenceClassifierOutput(loss=loss, logits=logits)


def from_encoder(path: str, label_keys: dict, dtype=None) -> MeanPoolClassifier:
    """A :class:`MeanPoolClassifier` around the pretrained encoder at ``path`` with a fresh head."""
    encoder = AutoModel.from_pretrained(path, dtype=dtype)
    config = encoder.config
    for key, value in label_keys.items():
        setattr(config, key, value)
    setattr(config, POOLING_KEY, "mean")
    model = MeanPoolClassifier(config, encoder=encoder)
    if dtype is not None:
        model.to(dtype)
    return model


def load_sequence_classifier(path: str, dtype=None):
    """A saved :class:`MeanPoolClassifier` (config says ``rlhf_pooling: mean``) or any model
    ``AutoModelForSequenceClassification`` loads."""
    from transformers import AutoModelForSequenceClassification

    config = AutoConfig.from_pretrained(path)
    if getattr(config, POOLING_KEY, None) == "mean":
        return MeanPoolClassifier.from_pretrained(path, config=config, dtype=dtype)
    return AutoModelForSequenceClassification.from_pretrained(path, dtype=dtype)


@torch.inference_mode()
def embed(model: MeanPoolClassifier, tokenizer, texts: Sequence[str], max_length: int, batch_size: int = 64):
    """Pooled embeddings (len(texts), hidden) of ``texts`` (truncated to ``max_length`` tokens), in batches
    sorted by length so little compute goes to padding."""
    model.eval()
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = torch.zeros(len(texts), model.config.hidden_size)
    device = next(model.parameters()).device
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = tokenizer(
            [texts[i] for i in idx], truncation=True, max_length=max_length, padding=True, return_tensors="pt"
        )
        batch = {k: v.to(device) for k, v in batch.items() if k in ("input_ids", "attention_mask")}
        out[idx] = model.pooled(**batch).float().cpu()
    return out


def positive_weights(labels: torch.Tensor, cap: float = 20.0) -> torch.Tensor:
    """Per-category ``pos_weight`` = negatives / positives, capped (a category with 5 positives in 4000 rows
    would otherwise weigh each positive 800x and flag anything near it)."""
    positives = labels.sum(0)
    negatives = labels.shape[0] - positives
    return (negatives / positives.clamp(min=1.0)).clamp(min=1.0, max=cap)


def fit_linear_head(
    features: torch.Tensor,
    labels: torch.Tensor,
    pos_weight: torch.Tensor | None = None,
    l2: float = 1e-3,
    max_iter: int = 200,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight (labels, dim), bias (labels,)) of one logistic regression per label on fixed features.

    The features are standardised for the fit and the result folded back, so it applies to raw
    pooled embeddings. ``l2`` is the ridge penalty per unit of mean loss (units: 1/feature variance).
    """
    mean, std = features.mean(0), features.std(0).clamp(min=1e-6)
    x = ((features - mean) / std).double()
    y = labels.double()
    w = torch.zeros(x.shape[1], y.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(y.shape[1], dtype=torch.float64, requires_grad=True)
    pw = pos_weight.double() if pos_weight is not None else None
    optimizer = torch.optim.LBFGS([w, b], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(x @ w + b, y, pos_weight=pw)
        loss = loss + l2 * (w * w).sum() / 2
        loss.backward()
        return loss

    optimizer.step(closure)
    weight = (w.detach() / std.double().unsqueeze(1)).T  # (labels, dim) on raw features
    bias = b.detach() - (mean.double() @ (w.detach() / std.double().unsqueeze(1)))
    return weight.float(), bias.float()
