"""The moderation interface every backend shares: one result schema, one protocol, one factory.

A moderator takes a batch of items (plain texts, or conversations as lists of ``{"role", "content"}``
messages) and a side (``"input"``: the user's request; ``"output"``: the assistant's answer, with the
earlier messages as context) and returns one :class:`ModerationResult` per item, in order.

``build_moderator(mapping)`` builds one from the ``moderation:`` mapping of a YAML config::

    moderation:
      backend: cascade            # rules | classifier | guard | cascade
      on_error: block             # cascade only: block (fail closed) or allow (fail open)
      rules: {...}                # see rlhf.moderation.rules
      classifier: {model: outputs/quickstart/moderation-classifier, ...}
      guard: {model: ..., ...}
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

SIDES = ("input", "output")
BACKENDS = ("rules", "classifier", "guard", "cascade")

Item = str | Sequence[Mapping[str, str]]


class ModerationConfigError(ValueError):
    """The ``moderation`` mapping is wrong; the message names the key and what was expected."""


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


def load_moderation_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read the ``moderation:`` mapping from a YAML file (or the whole file if it has no such key)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ModerationConfigError(f"{path}: moderation config file not found")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ModerationConfigError(f"{path}: expected a mapping, got {type(data).__name__}")
    mapping = data.get("moderation", data)
    if not isinstance(mapping, dict):
        raise ModerationConfigError(f"{path}: key 'moderation' must be a mapping")
    mapping = dict(mapping)
    mapping.setdefault("_base_dir", str(path.parent))
    return mapping


def build_moderator(config: Mapping[str, Any] | str | os.PathLike) -> Moderator:
    """Build a moderator from a ``moderation`` mapping (or the path of a YAML file holding one).

    The mapping's ``backend`` (default "rules") picks the class; the sub-mapping of the same name holds
    that backend's options, and "cascade" reads the ``rules``, ``classifier`` and ``guard`` sub-mappings
    it finds. Raises ModerationConfigError naming the key on a wrong mapping.
    """
    if isinstance(config, str | os.PathLike):
        config = load_moderation_config(config)
    if not isinstance(config, Mapping):
        raise ModerationConfigError(f"moderation config must be a mapping, got {type(config).__name__}")
    config = dict(config)
    backend = config.get("backend", "rules")
    if backend not in BACKENDS:
        raise ModerationConfigError(
            f"moderation: key 'backend' expects one of {list(BACKENDS)}, got {backend!r}"
        )
    if backend == "rules":
        from rlhf.moderation.rules import RulesModerator

        return RulesModerator.from_config(_section(config, "rules"))
    if backend == "classifier":
        from rlhf.moderation.classifier import ClassifierModerator

        return ClassifierModerator.from_config(_section(config, "classifier", required=True))
    if backend == "guard":
        from rlhf.moderation.guard import GuardModerator

        return GuardModerator.from_config(_section(config, "guard", required=True))
    from rlhf.moderation.cascade import CascadeModerator

    return CascadeModerator.from_config(config)


def _section(config: Mapping[str, Any], key: str, required: bool = False) -> dict[str, Any]:
    """The sub-mapping ``config[key]``, carrying the shared keys (taxonomy, base dir) down into it."""
    section = config.get(key)
    if section is None:
        if required:
            raise ModerationConfigError(f"moderation: backend '{key}' needs a '{key}:' mapping")
        section = {}
    if not isinstance(section, Mapping):
        raise ModerationConfigError(
            f"moderation: key '{key}' must be a mapping, got {type(section).__name__}"
        )
    section = dict(section)
    for shared in ("taxonomy", "_base_dir"):
        if shared in config:
            section.setdefault(shared, config[shared])
    return section


def resolve_path(value: str, config: Mapping[str, Any]) -> str:
    """A path from a config: absolute, existing relative to the cwd, or relative to the config file."""
    if os.path.isabs(value) or os.path.exists(value) or "_base_dir" not in config:
        return value
    candidate = os.path.join(config["_base_dir"], value)
    return candidate if os.path.exists(candidate) else value
