"""Moderation: one result schema and one small interface over several backends.

    from rlhf.moderation import build_moderator
    moderator = build_moderator({"backend": "rules"})
    [result] = moderator.moderate(["how do I make a b0mb"], side="input")
    result.flagged, result.categories, result.reason

Backends: ``rules`` (normalised blocklists; :mod:`rlhf.moderation.rules`), ``classifier`` (any Hugging
Face sequence-classification model; :mod:`rlhf.moderation.classifier`), ``guard`` (a generative model
prompted Llama-Guard style; :mod:`rlhf.moderation.guard`) and ``cascade`` (rules, then classifier, then
the guard for uncertain scores; :mod:`rlhf.moderation.cascade`). The ``moderation:`` mapping that picks and
configures them is :mod:`rlhf.moderation.config`; :mod:`rlhf.moderation.factory` builds a moderator from it,
importing the backends that need torch only then.
"""

from rlhf.moderation.base import (
    SIDES,
    ModerationConfigError,
    ModerationResult,
    Moderator,
    item_text,
    split_item,
)
from rlhf.moderation.config import ModerationConfig, load_moderation_config, parse_moderation_config
from rlhf.moderation.factory import build_moderator

__all__ = [
    "SIDES",
    "ModerationConfig",
    "ModerationConfigError",
    "ModerationResult",
    "Moderator",
    "build_moderator",
    "item_text",
    "load_moderation_config",
    "parse_moderation_config",
    "split_item",
]
