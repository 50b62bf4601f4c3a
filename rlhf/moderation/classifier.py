"""Classifier backend: any Hugging Face sequence-classification model, scored per category.

Config (the ``classifier:`` sub-mapping)::

    classifier:
      model: runs/quickstart/moderation-train   # local dir or Hub id (what `rlhf moderation-train` writes)
      label_map: null        # null: labels are category ids; a table name from categories.yaml
                             # ("openai", "llama_guard", ...); or {label: category | [categories] | null}
      thresholds:            # per category and per side; lookup order: side.category, side.default,
        default: 0.5         #   category, default. Omitted: the thresholds saved with the model
        input: {self_harm: 0.3}   # (`rlhf moderation-train` records those it chose on validation), else 0.5
        output: {default: 0.6}
      max_length: 256        # tokens per window
      stride: null           # tokens shared by consecutive windows of a long text (null: max_length/4)
      batch_size: 16         # windows per forward pass
      device: auto           # auto | cpu | cuda | cuda:1 | mps
      problem_type: null     # override the model's: multi_label_classification | single_label_classification
      normalize: null        # fold case/look-alikes/zero-width before tokenizing (null: as the model was trained)

Scores: a multi-label model (``config.problem_type == "multi_label_classification"``) gets a sigmoid
per label and a category takes the highest of its labels; a single-label model gets a softmax and a
category takes the sum of its labels' probabilities. A text longer than ``max_length`` is scored in
overlapping windows and each category keeps its worst (highest) window.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from rlhf.moderation.base import (
    SIDES,
    Item,
    ModerationConfigError,
    ModerationResult,
    check_side,
    item_text,
    make_result,
)
from rlhf.moderation.config import ClassifierConfig, parse_section, resolve_path
from rlhf.moderation.normalize import normalize
from rlhf.moderation.taxonomy import label_mapping

MULTI_LABEL = "multi_label_classification"
SINGLE_LABEL = "single_label_classification"


def resolve_thresholds(
    spec: float | Mapping[str, Any] | None, categories: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Expand a threshold spec into ``{side: {category: threshold}}`` for every side and category.

    ``spec`` is a number (everywhere), or a mapping with optional ``default``, per-category numbers and
    per-side sub-mappings (``input`` / ``output``: a number or a mapping of the same shape). Lookup
    order for (side, category): side.category, side.default, category, default, 0.5.
    """
    if spec is None:
        spec = {}
    if isinstance(spec, int | float):
        spec = {"default": float(spec)}
    if not isinstance(spec, Mapping):
        raise ModerationConfigError(f"classifier: thresholds must be a number or a mapping, got {spec!r}")
    unknown = set(spec) - set(categories) - set(SIDES) - {"default"}
    if unknown:
        raise ModerationConfigError(
            f"classifier: thresholds has unknown key(s) {sorted(unknown)}; expected default, input, output "
            f"or a category id ({', '.join(categories)})"
        )
    base_default = float(spec.get("default", 0.5))
    out = {}
    for side in SIDES:
        side_spec = spec.get(side, {})
        if isinstance(side_spec, int | float):
            side_spec = {"default": float(side_spec)}
        bad = set(side_spec) - set(categories) - {"default"}
        if bad:
            raise ModerationConfigError(f"classifier: thresholds.{side} has unknown key(s) {sorted(bad)}")
        out[side] = {
            cid: float(side_spec.get(cid, side_spec.get("default", spec.get(cid, base_default))))
            for cid in categories
        }
    return out


def category_matrix(
    id2label: Mapping[int, str], mapping: Mapping[str, list[str]] | None
) -> tuple[list[str], torch.Tensor]:
    """The categories a model's labels cover and a (num_labels, num_categories) 0/1 matrix.

    ``mapping`` None means each label is itself a category id. Labels mapped to nothing (e.g. "safe")
    get an all-zero row. Raises ModerationConfigError for a label the mapping does not cover.
    """
    labels = [id2label[i] for i in sorted(id2label)]
    if mapping is None:
        mapping = {label: [label] for label in labels}
    missing = [label for label in labels if label not in mapping]
    if missing:
        raise ModerationConfigError(
            f"classifier: label_map has no entry for model label(s) {missing}; map each to a category or null"
        )
    categories: list[str] = []
    for label in labels:
        for cid in mapping[label]:
            if cid not in categories:
                categories.append(cid)
    matrix = torch.zeros(len(labels), len(categories))
    for i, label in enumerate(labels):
        for cid in mapping[label]:
            matrix[i, categories.index(cid)] = 1.0
    return categories, matrix


def label_scores(logits: torch.Tensor, problem_type: str) -> torch.Tensor:
    """Per-label probabilities: sigmoid for multi-label models, softmax otherwise."""
    return torch.sigmoid(logits) if problem_type == MULTI_LABEL else torch.softmax(logits, dim=-1)


def category_scores(probs: torch.Tensor, matrix: torch.Tensor, problem_type: str) -> torch.Tensor:
    """Label probabilities (n, labels) -> category scores (n, categories).

    Multi-label: a category takes the highest probability among its labels. Single-label: the labels
    are exclusive, so a category takes the sum of its labels' probabilities (capped at 1).
    """
    if problem_type == MULTI_LABEL:
        masked = probs.unsqueeze(-1) * matrix.unsqueeze(0)  # (n, labels, categories)
        return masked.amax(dim=1)
    return (probs @ matrix).clamp(max=1.0)


class ClassifierModerator:
    """Scores texts with a sequence-classification model; see the module docstring for the config."""

    name = "classifier"

    def __init__(
        self,
        model,
        tokenizer,
        label_map: Mapping[str, list[str]] | None = None,
        thresholds: float | Mapping[str, Any] | None = None,
        max_length: int = 256,
        stride: int | None = None,
        batch_size: int = 16,
        problem_type: str | None = None,
        normalize: bool | None = None,
    ):
        self.model = model.eval()
        self.tokenizer = tokenizer
        if tokenizer.pad_token is None:  # decoder-only backbones: pad with eos, score the last real token
            tokenizer.pad_token = tokenizer.eos_token
        if getattr(model.config, "pad_token_id", None) is None:
            model.config.pad_token_id = tokenizer.pad_token_id
        self.problem_type = problem_type or getattr(model.config, "problem_type", None) or SINGLE_LABEL
        if self.problem_type not in (MULTI_LABEL, SINGLE_LABEL):
            raise ModerationConfigError(
                f"classifier: problem_type must be {MULTI_LABEL} or {SINGLE_LABEL}, got {self.problem_type!r}"
            )
        self.categories, self.matrix = category_matrix(model.config.id2label, label_map)
        self.thresholds = resolve_thresholds(thresholds, self.categories)
        limit = getattr(tokenizer, "model_max_length", None) or max_length
        self.max_length = min(max_length, limit) if limit < 1_000_000 else max_length
        stride = self.max_length // 4 if stride is None else stride
        if not 0 <= stride < self.max_length // 2:
            raise ModerationConfigError(f"classifier: stride must be in [0, max_length/2), got {stride}")
        self.stride = stride
        self.batch_size = batch_size
        # Fold look-alike letters, zero-width characters and case before tokenizing; a model trained by
        # `rlhf moderation-train` records whether it was trained on folded text.
        self.normalize = bool(
            getattr(model.config, "rlhf_normalize_text", False) if normalize is None else normalize
        )

    @classmethod
    def from_config(
        cls,
        config: ClassifierConfig | Mapping[str, Any],
        base_dir: str | None = None,
        taxonomy: str | None = None,
    ) -> ClassifierModerator:
        """Load the model ``config`` names and build the moderator (module docstring).

        ``config``: a :class:`ClassifierConfig` or a ``classifier:`` mapping; ``base_dir``: where relative
        paths are looked up; ``taxonomy``: the categories YAML for named ``label_map`` tables when the
        section names none. Raises ModerationConfigError when the model does not load or a key is wrong.
        """
        from transformers import AutoTokenizer

        from rlhf.moderation.pooled import load_sequence_classifier

        if not isinstance(config, ClassifierConfig):
            config = parse_section(ClassifierConfig, config, "classifier")
        path = resolve_path(config.model, base_dir)
        try:
            tokenizer = AutoTokenizer.from_pretrained(resolve_path(config.tokenizer or path, base_dir))
            dtype = getattr(torch, config.dtype) if config.dtype else None
            model = load_sequence_classifier(path, dtype=dtype)
        except OSError as err:
            raise ModerationConfigError(
                f"classifier: cannot load model '{path}' ({str(err).splitlines()[0]}); train one with "
                "`rlhf moderation-train` or point 'model' at a sequence-classification model"
            ) from None
        model.to(_device(config.device))
        label_map = config.label_map
        if label_map is not None:
            taxonomy = config.taxonomy or taxonomy
            try:
                label_map = label_mapping(label_map, resolve_path(taxonomy, base_dir) if taxonomy else None)
            except ValueError as err:
                raise ModerationConfigError(f"classifier: label_map: {err}") from None
        return cls(
            model,
            tokenizer,
            label_map=label_map,
            # none given: what `rlhf moderation-train` saved with the model (chosen on its validation split)
            thresholds=config.thresholds
            if config.thresholds is not None
            else getattr(model.config, "rlhf_thresholds", None),
            max_length=config.max_length,
            stride=config.stride,
            batch_size=config.batch_size,
            problem_type=config.problem_type,
            normalize=config.normalize,
        )

    def _windows(self, texts: Sequence[str]) -> tuple[list[list[int]], list[int]]:
        """Token-id windows (special tokens included) of every text, and for each window its text's index.

        A text longer than ``max_length`` tokens is cut into windows of ``max_length`` that share
        ``stride`` tokens with their neighbour, so a phrase split by one cut is whole in the next window.
        """
        enc = self.tokenizer(
            list(texts),
            truncation=True,
            max_length=self.max_length,
            stride=self.stride,
            return_overflowing_tokens=True,
        )
        if "overflow_to_sample_mapping" in enc:
            return list(enc["input_ids"]), list(enc["overflow_to_sample_mapping"])
        # Tokenizers without overflow support: cut the raw ids, decode each piece and re-encode it.
        size = max(1, self.max_length - self.tokenizer.num_special_tokens_to_add(pair=False))
        step = max(1, size - self.stride)
        windows, owners = [], []
        for index, text in enumerate(texts):
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            starts = range(0, max(1, len(ids) - self.stride), step) if len(ids) > size else [0]
            for start in starts:
                piece = self.tokenizer.decode(ids[start : start + size])
                windows.append(
                    self.tokenizer(piece, truncation=True, max_length=self.max_length)["input_ids"]
                )
                owners.append(index)
        return windows, owners

    @torch.inference_mode()
    def score(self, texts: Sequence[str]) -> torch.Tensor:
        """Category scores (len(texts), len(self.categories)): each text's worst (highest) window.

        An empty or whitespace-only text (or one the tokenizer turns into no tokens) is not sent to the
        model: there is nothing to judge, so it scores 0.0 in every category (safe).
        """
        if self.normalize:
            texts = [normalize(t) for t in texts]
        scores = torch.zeros(len(texts), len(self.categories))
        kept = [i for i, t in enumerate(texts) if t.strip()]
        if not kept:
            return scores
        windows, owners = self._windows([texts[i] for i in kept])
        special = set(self.tokenizer.all_special_ids)
        content = [k for k, w in enumerate(windows) if any(t not in special for t in w)]
        windows = [windows[k] for k in content]
        owners = [kept[owners[k]] for k in content]
        device = next(self.model.parameters()).device
        per_window = []
        for i in range(0, len(windows), self.batch_size):
            batch = self.tokenizer.pad({"input_ids": windows[i : i + self.batch_size]}, return_tensors="pt")
            batch = {k: v.to(device) for k, v in batch.items() if k in ("input_ids", "attention_mask")}
            logits = self.model(**batch).logits.float().cpu()
            per_window.append(
                category_scores(label_scores(logits, self.problem_type), self.matrix, self.problem_type)
            )
        if per_window:
            stacked = torch.cat(per_window)
            owner_index = torch.tensor(owners).unsqueeze(-1).expand_as(stacked)
            scores.scatter_reduce_(0, owner_index, stacked, reduce="amax", include_self=True)
        return scores

    def moderate(self, items: Sequence[Item], side: str = "input") -> list[ModerationResult]:
        """One result per item with every category's score and this side's thresholds."""
        check_side(side)
        start = time.perf_counter()
        texts = [item_text(item, side) for item in items]
        scores = self.score(texts) if items else torch.zeros(0, 0)
        latency = (time.perf_counter() - start) / max(1, len(items))
        thresholds = self.thresholds[side]
        results = []
        for text, row in zip(texts, scores.tolist(), strict=True):
            item_scores = dict(zip(self.categories, row, strict=True))
            if not text.strip():  # nothing to judge: safe whatever the thresholds
                results.append(
                    make_result(
                        categories=dict.fromkeys(self.categories, False),
                        scores=item_scores,
                        thresholds=dict(thresholds),
                        reason="classifier: empty text",
                        backend=self.name,
                        latency_s=latency,
                        side=side,
                    )
                )
                continue
            flags = {cid: item_scores[cid] >= thresholds[cid] for cid in self.categories}
            hits = [
                f"{cid} {item_scores[cid]:.2f} >= {thresholds[cid]:.2f}"
                for cid in self.categories
                if flags[cid]
            ]
            top = max(self.categories, key=item_scores.__getitem__) if self.categories else None
            reason = (
                "; ".join(hits) if hits else f"below thresholds (top: {top} {item_scores.get(top, 0.0):.2f})"
            )
            results.append(
                make_result(
                    categories=flags,
                    scores=item_scores,
                    thresholds=dict(thresholds),
                    reason=f"classifier: {reason}",
                    backend=self.name,
                    latency_s=latency,
                    side=side,
                )
            )
        return results


def _device(name: str | None) -> torch.device:
    if name in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(name)
