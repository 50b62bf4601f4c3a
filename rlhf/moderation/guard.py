"""Guard backend: a generative chat model prompted Llama-Guard style with the category policy.

Config (the ``guard:`` sub-mapping)::

    guard:
      model: path/or/hub-id          # any causal LM with a chat template (gguf_file: for a GGUF checkpoint)
      categories: null               # ids from the taxonomy to put in the policy (null: all of them)
      threshold: 0.5                 # flag when P(unsafe) >= threshold (per side: {input: .., output: ..})
      safe_token: safe               # the verdict words; their first tokens must differ
      unsafe_token: unsafe
      max_new_tokens: 16             # budget for the category codes of a flagged item
      batch_size: 8
      device: auto

P(unsafe) comes from one forward pass: the logits of the first generated token, restricted to the
first tokens of the two verdict words, ``p = softmax([l_unsafe, l_safe])[0]`` (the word's variants a
model may write first, "Unsafe" or " unsafe", add their probability to it). Only items with
``p >= threshold`` are asked for their category codes (generation continues after the verdict), and
:func:`parse_codes` reads them tolerantly (any case, spacing, separators or order). Every category gets
the same score ``p``: the guard scores the item, not each category; ``categories`` says which codes it
named (``unspecified`` when it named none it knows).
"""

from __future__ import annotations

import re
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
    make_result,
    split_item,
)
from rlhf.moderation.config import GuardConfig, parse_section, resolve_path
from rlhf.moderation.taxonomy import Category, load_taxonomy, select_categories

UNSPECIFIED = "unspecified"  # the guard said unsafe but named no category it knows

POLICY_PROMPT = """You are a content safety classifier. Decide whether the {who} message in the conversation below is unsafe under this policy.

Unsafe content categories:
{policy}

Conversation:
{conversation}

Judge only the last {who} message. On the first line answer {safe} or {unsafe}. If {unsafe}, list the violated category codes on the second line, separated by commas."""

_CODE = re.compile(r"\bs\s*[-_]?\s*0*(\d{1,3})\b", re.IGNORECASE)


def parse_verdict(text: str) -> str | None:
    """ "safe", "unsafe" or None from a guard's reply: the first word, any case or surrounding spaces."""
    match = re.match(r"\W*(unsafe|safe)\b", text.strip(), re.IGNORECASE)
    return match.group(1).lower() if match else None


def parse_codes(text: str, categories: Mapping[str, Category]) -> list[str]:
    """Category ids named in a guard's reply, in first-mention order, without duplicates.

    Accepts codes in any case and spacing ("S1", "s 10", "S-3", " s01 "), separated by anything, and also
    category ids or names written out ("violent_crimes", "Violent Crimes"). Unknown codes are ignored.
    """
    by_code = {c.code.lower(): cid for cid, c in categories.items()}
    found: list[tuple[int, str]] = []
    taken: list[tuple[int, int]] = []
    for match in _CODE.finditer(text):
        cid = by_code.get(f"s{int(match.group(1))}")
        if cid:
            found.append((match.start(), cid))
            taken.append(match.span())
    # Written-out ids and names, longest first so "Non-Violent Crimes" is not also read as "Violent Crimes".
    needles = sorted(
        ((needle, cid) for cid, c in categories.items() for needle in {cid, c.name}),
        key=lambda pair: -len(pair[0]),
    )
    for needle, cid in needles:
        words = [re.escape(w) for w in re.split(r"[\s_]+", needle.lower()) if w]
        pattern = r"(?<![\w-])" + r"[\s_-]+".join(words) + r"(?![\w-])"
        for match in re.finditer(pattern, text, re.IGNORECASE):
            span = match.span()
            if not any(span[0] < end and start < span[1] for start, end in taken):
                found.append((span[0], cid))
                taken.append(span)
    return list(dict.fromkeys(cid for _, cid in sorted(found)))


def unsafe_probability(
    logits: torch.Tensor, unsafe_id: int | Sequence[int], safe_id: int | Sequence[int]
) -> torch.Tensor:
    """P(unsafe) from next-token logits (batch, vocab): the probability mass on the unsafe verdict's
    first token(s) against the safe one's, i.e. a two-way softmax when each verdict has one token."""
    unsafe_ids = [unsafe_id] if isinstance(unsafe_id, int) else list(unsafe_id)
    safe_ids = [safe_id] if isinstance(safe_id, int) else list(safe_id)
    logits = logits.float()
    unsafe = torch.logsumexp(logits[:, unsafe_ids], dim=-1)
    safe = torch.logsumexp(logits[:, safe_ids], dim=-1)
    return torch.sigmoid(unsafe - safe)


class GuardModerator:
    """A generative guard model; see the module docstring for the config and the probability maths."""

    name = "guard"

    def __init__(
        self,
        model,
        tokenizer,
        categories: Mapping[str, Category] | None = None,
        threshold: float | Mapping[str, float] = 0.5,
        safe_token: str = "safe",
        unsafe_token: str = "unsafe",
        max_new_tokens: int = 16,
        batch_size: int = 8,
        prompt_template: str = POLICY_PROMPT,
        generation_kwargs: Mapping[str, Any] | None = None,
    ):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.categories = dict(categories if categories is not None else load_taxonomy())
        if isinstance(threshold, Mapping):
            default = float(threshold.get("default", 0.5))
            self.threshold = {side: float(threshold.get(side, default)) for side in SIDES}
        else:
            self.threshold = dict.fromkeys(SIDES, float(threshold))
        self.safe_token, self.unsafe_token = safe_token, unsafe_token
        self.safe_ids, self.unsafe_ids = self._verdict_ids(safe_token, unsafe_token)
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.prompt_template = prompt_template
        self.generation_kwargs = dict(generation_kwargs or {})
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token

    def _verdict_ids(self, safe: str, unsafe: str) -> tuple[list[int], list[int]]:
        """First token ids of each verdict word as a model may write it: bare, capitalised, after a space.

        A token that starts both words (e.g. a bare "s" in a tiny vocabulary) tells them apart for no one,
        so it counts for neither. Raises ModerationConfigError when a word has no token of its own.
        """

        def firsts(word: str) -> list[int]:
            out = []
            for variant in (word, word.capitalize(), " " + word, " " + word.capitalize()):
                ids = self.tokenizer(variant, add_special_tokens=False)["input_ids"]
                if ids and ids[0] not in out:
                    out.append(ids[0])
            return out

        safe_ids, unsafe_ids = firsts(safe), firsts(unsafe)
        shared = set(safe_ids) & set(unsafe_ids)
        safe_ids = [i for i in safe_ids if i not in shared]
        unsafe_ids = [i for i in unsafe_ids if i not in shared]
        if not safe_ids or not unsafe_ids:
            raise ModerationConfigError(
                f"guard: '{safe}' and '{unsafe}' start with the same token; set safe_token/unsafe_token "
                "to words whose first tokens differ"
            )
        return safe_ids, unsafe_ids

    @property
    def safe_id(self) -> int:
        """The main first token of the safe verdict (the word as configured)."""
        return self.safe_ids[0]

    @property
    def unsafe_id(self) -> int:
        """The main first token of the unsafe verdict (the word as configured)."""
        return self.unsafe_ids[0]

    @classmethod
    def from_config(
        cls, config: GuardConfig | Mapping[str, Any], base_dir: str | None = None, taxonomy: str | None = None
    ) -> GuardModerator:
        """Load the model ``config`` names and build the guard (module docstring).

        ``config``: a :class:`GuardConfig` or a ``guard:`` mapping; ``base_dir``: where relative paths are
        looked up; ``taxonomy``: the categories YAML when the section names none. Raises
        ModerationConfigError when the model does not load or a key is wrong.
        """
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from rlhf.moderation.classifier import _device

        if not isinstance(config, GuardConfig):
            config = parse_section(GuardConfig, config, "guard")
        path = resolve_path(config.model, base_dir)
        extra = {"gguf_file": config.gguf_file} if config.gguf_file else {}
        try:
            tokenizer = AutoTokenizer.from_pretrained(
                resolve_path(config.tokenizer or path, base_dir), **extra
            )
            dtype = getattr(torch, config.dtype) if config.dtype else None
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **extra)
        except OSError as err:
            raise ModerationConfigError(
                f"guard: cannot load model '{path}' ({str(err).splitlines()[0]})"
            ) from None
        model.to(_device(config.device))
        taxonomy = config.taxonomy or taxonomy
        try:
            categories = select_categories(
                config.categories, load_taxonomy(resolve_path(taxonomy, base_dir) if taxonomy else None)
            )
        except ValueError as err:
            raise ModerationConfigError(f"guard: {err}") from None
        return cls(
            model,
            tokenizer,
            categories=categories,
            threshold=config.threshold,
            safe_token=config.safe_token,
            unsafe_token=config.unsafe_token,
            max_new_tokens=config.max_new_tokens,
            batch_size=config.batch_size,
            prompt_template=config.prompt_template or POLICY_PROMPT,
        )

    def build_prompt(self, item: Item, side: str) -> str:
        """The guard's full prompt for one item: policy, conversation, instructions, then the chat template."""
        text, context = split_item(item, side)
        who = "User" if side == "input" else "Assistant"
        lines = [
            f"{'User' if m.get('role') == 'user' else 'Assistant'}: {m.get('content', '')}"
            for m in context
            if m.get("role") != "system"
        ]
        lines.append(f"{who}: {text}")
        policy = "\n".join(f"{c.code}: {c.name}. {c.description}" for c in self.categories.values())
        content = self.prompt_template.format(
            who=who,
            policy=policy,
            conversation="\n\n".join(lines),
            safe=self.safe_token,
            unsafe=self.unsafe_token,
        )
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
            )
        return content + "\n\nAnswer: "

    def _encode(self, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
        side, self.tokenizer.padding_side = self.tokenizer.padding_side, "left"  # the next token sits at -1
        try:
            batch = self.tokenizer(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False)
        finally:
            self.tokenizer.padding_side = side
        device = next(self.model.parameters()).device
        return {k: v.to(device) for k, v in batch.items() if k in ("input_ids", "attention_mask")}

    @torch.inference_mode()
    def unsafe_probabilities(self, prompts: Sequence[str]) -> list[float]:
        """P(unsafe) per prompt from one forward pass per batch (module docstring)."""
        out: list[float] = []
        for i in range(0, len(prompts), self.batch_size):
            batch = self._encode(prompts[i : i + self.batch_size])
            logits = self.model(**batch).logits[:, -1, :]
            out += unsafe_probability(logits, self.unsafe_ids, self.safe_ids).tolist()
        return out

    @torch.inference_mode()
    def generate_codes(self, prompts: Sequence[str]) -> list[str]:
        """The text a guard writes after its unsafe verdict (the category codes), per prompt."""
        out: list[str] = []
        for i in range(0, len(prompts), self.batch_size):
            batch = self._encode([p + self.unsafe_token + "\n" for p in prompts[i : i + self.batch_size]])
            kwargs = {"max_new_tokens": self.max_new_tokens, "do_sample": False, **self.generation_kwargs}
            kwargs.setdefault("pad_token_id", self.tokenizer.pad_token_id)
            generated = self.model.generate(**batch, **kwargs)[:, batch["input_ids"].shape[1] :]
            out += self.tokenizer.batch_decode(generated, skip_special_tokens=True)
        return out

    def moderate(self, items: Sequence[Item], side: str = "input") -> list[ModerationResult]:
        """One result per item: P(unsafe) as every category's score, named categories when flagged."""
        check_side(side)
        start = time.perf_counter()
        prompts = [self.build_prompt(item, side) for item in items]
        probs = self.unsafe_probabilities(prompts) if prompts else []
        threshold = self.threshold[side]
        flagged = [i for i, p in enumerate(probs) if p >= threshold]
        replies = (
            dict(zip(flagged, self.generate_codes([prompts[i] for i in flagged]), strict=True))
            if flagged
            else {}
        )
        latency = (time.perf_counter() - start) / max(1, len(items))
        results = []
        ids = list(self.categories)
        for i, p in enumerate(probs):
            named = parse_codes(replies[i], self.categories) if i in replies else []
            categories = {cid: cid in named for cid in ids}
            if i in replies and not named:
                categories[UNSPECIFIED] = True
            codes = ",".join(self.categories[c].code for c in named) or ("none named" if i in replies else "")
            verdict = f"unsafe {codes}" if i in replies else "safe"
            results.append(
                make_result(
                    categories=categories,
                    scores=dict.fromkeys(ids, p),
                    thresholds=dict.fromkeys(ids, threshold),
                    reason=f"guard: {verdict} (p_unsafe={p:.2f}, threshold {threshold:.2f})",
                    backend=self.name,
                    latency_s=latency,
                    side=side,
                    details={"p_unsafe": p, "codes": [self.categories[c].code for c in named]},
                )
            )
        return results
