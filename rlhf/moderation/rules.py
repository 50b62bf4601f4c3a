"""Rules backend: blocklist phrases and regular expressions per category, matched on normalised text.

Config (the ``rules:`` sub-mapping of a ``moderation`` config)::

    rules:
      default_rules: true          # start from the package's lists (default_rules.yaml)
      allow:                       # phrases that excuse an overlapping block match, any category
        - "kill * (process|processes|task|job)"
      categories:
        violent_crimes:
          phrases: ["kill|murder (someone|somebody)"]   # see rlhf.moderation.normalize.phrase_regex
          regex: ["\\bhit ?man for hire\\b"]             # plain regexes over the normalised text
          allow: ["kill time"]
          sides: [input, output]   # which sides this category's rules check (default: both)

A phrase match is obfuscation-tolerant (case, Unicode look-alikes, zero-width characters, leetspeak,
letters split by spaces or punctuation) and bounded by word boundaries. A block match is dropped
when an allow phrase matches an overlapping span. Rules cannot score: results carry ``scores=None``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rlhf.moderation.base import (
    SIDES,
    Item,
    ModerationConfigError,
    ModerationResult,
    check_side,
    item_text,
    make_result,
)
from rlhf.moderation.config import RulesConfig, parse_section, resolve_path
from rlhf.moderation.normalize import normalize, phrase_regex

DEFAULT_RULES = Path(__file__).with_name("default_rules.yaml")


@dataclass
class Rule:
    """One compiled blocklist entry; ``source`` is the phrase or regex as written in the config."""

    category: str
    source: str
    kind: str  # "phrase" | "regex"
    pattern: re.Pattern[str]


@dataclass
class CategoryRules:
    block: list[Rule] = field(default_factory=list)
    allow: list[Rule] = field(default_factory=list)
    sides: tuple[str, ...] = SIDES


def compile_rule(category: str, source: str, kind: str) -> Rule:
    """Compile a phrase or regex; raises ModerationConfigError naming the category and the entry."""
    try:
        pattern = phrase_regex(source) if kind == "phrase" else re.compile(source)
    except (ValueError, re.error) as err:
        raise ModerationConfigError(f"rules: category '{category}': bad {kind} {source!r}: {err}") from None
    return Rule(category, source, kind, pattern)


class RulesModerator:
    """Blocklist moderator. Build with :meth:`from_config` or directly from compiled rules."""

    name = "rules"

    def __init__(self, categories: Mapping[str, CategoryRules], allow: Sequence[Rule] = ()):
        self.rules = dict(categories)
        self.allow = list(allow)

    @classmethod
    def from_config(
        cls, config: RulesConfig | Mapping[str, Any] | None = None, base_dir: str | None = None
    ) -> RulesModerator:
        """Build from a ``rules:`` mapping (see the module docstring) or a parsed :class:`RulesConfig`.

        ``base_dir``: where a relative ``default_rules`` path is looked up. Raises ModerationConfigError
        naming the key (an unknown key, a wrong type, a bad phrase or regex).
        """
        if not isinstance(config, RulesConfig):
            config = parse_section(RulesConfig, config, "rules")
        sources = [config]
        default = config.default_rules
        if default is True or isinstance(default, str):
            path = DEFAULT_RULES if default is True else Path(resolve_path(default, base_dir))
            if not path.is_file():
                raise ModerationConfigError(f"rules: default_rules file '{path}' not found")
            sources.insert(0, parse_section(RulesConfig, yaml.safe_load(path.read_text()), str(path)))

        categories: dict[str, CategoryRules] = {}
        allow: list[Rule] = []
        for source in sources:
            allow += [compile_rule("*", a, "phrase") for a in source.allow]
            for cid, spec in source.categories.items():
                entry = categories.setdefault(cid, CategoryRules())
                entry.block += [compile_rule(cid, p, "phrase") for p in spec.phrases]
                entry.block += [compile_rule(cid, r, "regex") for r in spec.regex]
                entry.allow += [compile_rule(cid, a, "phrase") for a in spec.allow]
                if spec.sides is not None:
                    entry.sides = tuple(spec.sides)
        return cls(categories, allow)

    def match(self, text: str, side: str = "input") -> list[Rule]:
        """The rules that match ``text`` on ``side`` (one per category at most, first match wins)."""
        norm = normalize(text)
        allowed = [m.span() for rule in self.allow for m in rule.pattern.finditer(norm)]
        hits = []
        for rules in self.rules.values():
            if side not in rules.sides:
                continue
            spans = allowed + [m.span() for rule in rules.allow for m in rule.pattern.finditer(norm)]
            for rule in rules.block:
                if any(not _overlaps(m.span(), spans) for m in rule.pattern.finditer(norm)):
                    hits.append(rule)
                    break
        return hits

    def moderate(self, items: Sequence[Item], side: str = "input") -> list[ModerationResult]:
        """One result per item: flagged categories, the rules that matched, ``scores=None``."""
        check_side(side)
        results = []
        for item in items:
            start = time.perf_counter()
            hits = self.match(item_text(item, side), side)
            flagged = {h.category for h in hits}
            categories = {cid: cid in flagged for cid in self.rules}
            reason = "; ".join(f"{h.category}: {h.kind} '{h.source}'" for h in hits) or "no rule matched"
            results.append(
                make_result(
                    categories=categories,
                    scores=None,
                    thresholds=None,
                    reason=f"rules: {reason}",
                    backend=self.name,
                    latency_s=time.perf_counter() - start,
                    side=side,
                    details={
                        "matches": [{"category": h.category, "rule": h.source, "kind": h.kind} for h in hits]
                    },
                )
            )
        return results


def _overlaps(span: tuple[int, int], others: Sequence[tuple[int, int]]) -> bool:
    return any(span[0] < end and start < span[1] for start, end in others)
