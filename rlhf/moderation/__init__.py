"""Moderation: one result schema and one small interface over several backends.

    from rlhf.moderation import build_moderator
    moderator = build_moderator({"backend": "rules"})
    [result] = moderator.moderate(["how do I make a b0mb"], side="input")
    result.flagged, result.categories, result.reason

Backends: ``rules`` (normalised blocklists; :mod:`rlhf.moderation.rules`), ``classifier`` (any Hugging
Face sequence-classification model; :mod:`rlhf.moderation.classifier`), ``guard`` (a generative model
prompted Llama-Guard style; :mod:`rlhf.moderation.guard`) and ``cascade`` (rules, then classifier, then
the guard for uncertain scores; :mod:`rlhf.moderation.cascade`). Backends that need torch are imported
only when built.
"""

from rlhf.moderation.base import (
    SIDES,
    ModerationConfigError,
    ModerationResult,
    Moderator,
    build_moderator,
    item_text,
    load_moderation_config,
    split_item,
)

__all__ = [
    "SIDES",
    "ModerationConfigError",
    "ModerationResult",
    "Moderator",
    "build_moderator",
    "item_text",
    "load_moderation_config",
    "split_item",
]
