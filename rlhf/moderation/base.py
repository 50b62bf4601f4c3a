"""The moderation interface every backend shares: one result schema, one protocol, one error type.

A moderator takes a batch of items (plain texts, or conversations as lists of ``{"role", "content"}``
messages) and a side (``"input"``: the user's request; ``"output"``: the assistant's answer, with the
earlier messages as context) and returns one :class:`ModerationResult` per item, in order.

Backends (:mod:`rlhf.moderation.rules`, ``classifier``, ``guard``, ``cascade``) import this module;
:func:`rlhf.moderation.factory.build_moderator` builds one from a ``moderation:`` mapping
(:mod:`rlhf.moderation.config`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

from rlhf.config import ConfigError

SIDES = ("input", "output")

Item = str | Sequence[Mapping[str, str]]


class ModerationConfigError(ConfigError):
    """The ``moderation`` mapping is wrong; the message names the file, the key and what was expected."""


@dataclass
class ModerationResult:
    """What one moderator decided about one item.

    Attributes:
        flagged: True when at least one category is over its threshold (or a rule matched).
        action: "block" when flagged, else "allow".
        categories: per category id, whether it was flagged.
        scores: per category id, a probability-like score in [0, 1]; None where the backend cannot score.
        thresholds: per category id, the threshold applied for this side; None where none applies.
        reason: why (the rule, label or guard verdict); never quotes the moderated text at length.
        backend: "rules" | "classifier" | "guard" | "cascade".
        latency_s: this item's share of the batch's wall time, in seconds.
        side: "input" | "output".
    """

    flagged: bool
    action: str
    categories: dict[str, bool]
    scores: dict[str, float] | None
    thresholds: dict[str, float] | None
    reason: str
    backend: str
    latency_s: float
    side: str
    details: dict[str, Any] = field(default_factory=dict)  # backend-specific extras (stages run, matches)

    @property
    def flagged_categories(self) -> list[str]:
        """The ids of the flagged categories, in the order they were checked."""
        return [c for c, hit in self.categories.items() if hit]

    @property
    def max_score(self) -> float | None:
        """The highest category score, or None when the backend does not score."""
        return max(self.scores.values(), default=0.0) if self.scores is not None else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict of every field."""
        return asdict(self)


@runtime_checkable
class Moderator(Protocol):
    """Anything with a ``name`` and a batched ``moderate(items, side)`` is a moderator."""

    name: str

    def moderate(self, items: Sequence[Item], side: str = "input") -> list[ModerationResult]: ...


def check_side(side: str) -> str:
    """Return ``side`` or raise ValueError naming the accepted values."""
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}")
    return side


def split_item(item: Item, side: str) -> tuple[str, list[dict[str, str]]]:
    """Split an item into (text to check, earlier messages as context).

    A plain string is the text itself. For a conversation, side "output" checks the last message (the
    assistant's answer) and side "input" the last user message; the messages before it are context.
    """
    if isinstance(item, str):
        return item, []
    messages = [dict(m) for m in item]
    if not messages:
        return "", []
    index = len(messages) - 1
    if side == "input":
        users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
        index = users[-1] if users else index
    return str(messages[index].get("content") or ""), messages[:index]


def item_text(item: Item, side: str) -> str:
    """The text a moderator checks for ``item`` on ``side`` (see :func:`split_item`)."""
    return split_item(item, side)[0]


def make_result(
    *,
    categories: dict[str, bool],
    scores: dict[str, float] | None,
    thresholds: dict[str, float] | None,
    reason: str,
    backend: str,
    latency_s: float,
    side: str,
    details: dict[str, Any] | None = None,
) -> ModerationResult:
    """Build a result whose ``flagged`` and ``action`` follow from ``categories``."""
    flagged = any(categories.values())
    return ModerationResult(
        flagged=flagged,
        action="block" if flagged else "allow",
        categories=categories,
        scores=scores,
        thresholds=thresholds,
        reason=reason,
        backend=backend,
        latency_s=latency_s,
        side=side,
        details=details or {},
    )


def error_result(backend: str, side: str, err: Exception, block: bool, latency_s: float) -> ModerationResult:
    """A result standing in for a moderator that raised ``err``: flagged when failing closed (``block``),
    with no categories; the reason names the error's type only (its message may quote the text)."""
    return ModerationResult(
        flagged=block,
        action="block" if block else "allow",
        categories={},
        scores=None,
        thresholds=None,
        reason=f"moderator error ({type(err).__name__}); failing {'closed' if block else 'open'}",
        backend=backend,
        latency_s=latency_s,
        side=side,
    )
