"""Template responses: what the user sees instead of a blocked request or a blocked answer.

A template is chosen per side ("input": the user's request was blocked; "output": the model's answer
was blocked) and per category, from config, falling back to the side's ``default`` and then to the
global ``default``. Self-harm has a supportive template on both sides, and when several categories are
flagged it wins, so a person in distress is never answered with a bare refusal.

Config (the ``templates:`` mapping of a pipeline config; every key is optional and overrides the
built-in text below)::

    templates:
      default: "Sorry, I can't help with that."     # any side, any category
      input:
        default: "..."                               # a blocked request, no category template
        self_harm: "..."
      output:
        default: "..."                               # a blocked answer
      priority: [self_harm]                          # categories that win when several are flagged

A template is fixed text; the only placeholder is ``{category}``, the flagged category's readable
name (e.g. "Violent Crimes"). Templates never quote the flagged text: nothing from the request or the
answer is ever formatted into them.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rlhf.config import ConfigError

SIDES = ("input", "output")
PLACEHOLDERS = ("category",)

FALLBACK = "Sorry, I can't help with that."

SELF_HARM_SUPPORT = (
    "I'm really sorry you're going through this, and I can't help with anything that could hurt you. "
    "You don't have to face it alone: please reach out to someone you trust, or contact a local crisis "
    "line or emergency services now if you are in danger. If you want to, tell me a bit about what is "
    "happening and we can talk."
)

DEFAULT_TEMPLATES: dict[str, dict[str, str]] = {
    "input": {
        "default": "Sorry, I can't help with that request. I'm happy to help with something else.",
        "violent_crimes": "I can't help with anything that could hurt people. I'm happy to help with something else.",
        "nonviolent_crimes": "I can't help with that, as it could facilitate a crime. Is there something else I can do?",
        "indiscriminate_weapons": "I can't help with weapons that could cause mass harm.",
        "hate": "I can't help with content that demeans people for who they are.",
        "privacy": "I can't help find or share private information about someone.",
        "self_harm": SELF_HARM_SUPPORT,
    },
    "output": {
        "default": "Sorry, I started writing an answer I shouldn't give. Could you ask in a different way?",
        "self_harm": SELF_HARM_SUPPORT,
    },
}
DEFAULT_PRIORITY = ("self_harm",)


class TemplateError(ConfigError):
    """A ``templates`` mapping is wrong; the message names the key and what was expected."""


def _check_text(where: str, text: Any) -> str:
    if not isinstance(text, str) or not text.strip():
        raise TemplateError(f"templates: {where} must be a non-empty string, got {text!r}")
    for _, name, spec, conv in string.Formatter().parse(text):
        if name is not None and (name not in PLACEHOLDERS or spec or conv):
            raise TemplateError(
                f"templates: {where} uses the placeholder {{{name}}}; the only one allowed is {{category}}"
            )
    return text


@dataclass
class Templates:
    """Template texts per side and category, and the rule that picks one.

    Attributes:
        by_side: ``{side: {category id or "default": text}}``.
        default: the text used when neither the category nor the side has one.
        priority: categories that win when several are flagged (earlier wins); other flagged
            categories follow in the order the moderator reported them.
        category_names: readable names for ``{category}`` (id -> name); ids are used where missing.
    """

    by_side: dict[str, dict[str, str]] = field(default_factory=lambda: {s: {} for s in SIDES})
    default: str = FALLBACK
    priority: tuple[str, ...] = DEFAULT_PRIORITY
    category_names: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None = None, builtin: bool = True) -> Templates:
        """Build from a ``templates:`` mapping laid over the built-in texts (``builtin=False``: without them).

        Raises TemplateError naming the key when the mapping has an unknown key, a non-string text, or a
        placeholder other than ``{category}``.
        """
        config = dict(config or {})
        unknown = set(config) - {"default", "priority", *SIDES}
        if unknown:
            raise TemplateError(
                f"templates: unknown key(s) {sorted(unknown)}; expected default, priority, input, output"
            )
        by_side: dict[str, dict[str, str]] = {
            side: dict(DEFAULT_TEMPLATES[side]) if builtin else {} for side in SIDES
        }
        for side in SIDES:
            section = config.get(side) or {}
            if isinstance(section, str):  # one text for the whole side
                section = {"default": section}
            if not isinstance(section, Mapping):
                raise TemplateError(f"templates: '{side}' must be a mapping of category id to text")
            for category, text in section.items():
                by_side[side][str(category)] = _check_text(f"{side}.{category}", text)
        default = _check_text("default", config.get("default", FALLBACK))
        priority = config.get("priority", DEFAULT_PRIORITY)
        if isinstance(priority, str):
            priority = [priority]
        if not isinstance(priority, Iterable) or not all(isinstance(p, str) for p in priority):
            raise TemplateError("templates: 'priority' must be a list of category ids")
        return cls(by_side=by_side, default=default, priority=tuple(priority), category_names=_names())

    def select(self, side: str, categories: Iterable[str] = ()) -> str:
        """The template for a block on ``side`` with the flagged ``categories`` (ids, in reported order).

        Order: a priority category with a template on this side, then the first flagged category with
        one, then the side's default, then the global default. ``{category}`` becomes the chosen
        category's name (or "this topic" when no category applies).
        """
        if side not in SIDES:
            raise ValueError(f"side must be one of {SIDES}, got {side!r}")
        flagged = list(categories)
        texts = self.by_side.get(side, {})
        ordered = [c for c in self.priority if c in flagged] + [c for c in flagged if c not in self.priority]
        chosen = next((c for c in ordered if c in texts), None)
        if chosen is not None:
            text = texts[chosen]
        else:
            text = texts.get("default", self.default)
            chosen = flagged[0] if flagged else None
        name = self.category_names.get(chosen, chosen.replace("_", " ")) if chosen else "this topic"
        return text.format(category=name) if "{" in text else text

    def for_result(self, result: Any) -> str:
        """The template for a blocking :class:`~rlhf.moderation.ModerationResult` (its side and categories)."""
        flagged = [c for c, hit in (result.categories or {}).items() if hit]
        return self.select(result.side, flagged)


def _names() -> dict[str, str]:
    """Readable category names from the moderation taxonomy (empty if it cannot be read)."""
    try:
        from rlhf.moderation.taxonomy import load_taxonomy

        return {cid: cat.name for cid, cat in load_taxonomy().items()}
    except Exception:  # the taxonomy is a nicety for {category}; ids still work without it
        return {}
