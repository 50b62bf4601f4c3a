"""Cascade backend: rules first, then the classifier, the guard only for uncertain classifier scores.

Config (the whole ``moderation:`` mapping; a stage takes part when its sub-mapping is present)::

    moderation:
      backend: cascade
      on_error: block          # a stage that raises: block (fail closed) or allow (fail open)
      uncertain_band: [0.2, 0.8]   # classifier scores in [low, high) are sent to the guard
      rules: {}                # {} = the default blocklists
      classifier: {model: ...}
      guard: {model: ...}

Order and cost: a rule match blocks at once (microseconds); the classifier sees only what the rules let
through; the guard (a generative model, the slowest) sees only items with a category score inside the
band, and its verdict replaces the classifier's for them, except that a category the classifier scored
at or above the band's top stays flagged. Without a guard the classifier's per-category thresholds
decide. The result carries the deciding stage's categories and reason, the classifier's scores when it
ran, and ``details["stages"]`` (which stages ran) and ``details["decided_by"]``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from rlhf.moderation.base import (
    Item,
    ModerationConfigError,
    ModerationResult,
    Moderator,
    check_side,
)
from rlhf.moderation.config import ON_ERROR, ModerationConfig, parse_moderation_config

logger = logging.getLogger(__name__)


class CascadeModerator:
    """Runs rules, classifier and guard in order, each only on what the previous one left undecided."""

    name = "cascade"

    def __init__(
        self,
        rules: Moderator | None = None,
        classifier: Moderator | None = None,
        guard: Moderator | None = None,
        uncertain_band: Sequence[float] = (0.2, 0.8),
        on_error: str = "block",
    ):
        if on_error not in ON_ERROR:
            raise ModerationConfigError(
                f"moderation: key 'on_error' expects one of {list(ON_ERROR)}, got {on_error!r}"
            )
        low, high = (float(x) for x in uncertain_band)
        if not 0.0 <= low <= high <= 1.0:
            raise ModerationConfigError(
                f"moderation: uncertain_band must be [low, high] within [0, 1], got {uncertain_band}"
            )
        if rules is None and classifier is None and guard is None:
            raise ModerationConfigError(
                "moderation: a cascade needs at least one of 'rules', 'classifier', 'guard'"
            )
        self.rules, self.classifier, self.guard = rules, classifier, guard
        self.band = (low, high)
        self.on_error = on_error

    @classmethod
    def from_config(cls, config: ModerationConfig | Mapping[str, Any]) -> CascadeModerator:
        """Build each stage whose sub-mapping is present (module docstring) from a whole ``moderation:``
        mapping or a parsed :class:`~rlhf.moderation.config.ModerationConfig`."""
        config = parse_moderation_config(config)
        stages: dict[str, Moderator] = {}
        if config.rules is not None:
            from rlhf.moderation.rules import RulesModerator

            stages["rules"] = RulesModerator.from_config(config.rules, base_dir=config.base_dir)
        if config.classifier is not None:
            from rlhf.moderation.classifier import ClassifierModerator

            stages["classifier"] = ClassifierModerator.from_config(
                config.classifier, base_dir=config.base_dir, taxonomy=config.taxonomy
            )
        if config.guard is not None:
            from rlhf.moderation.guard import GuardModerator

            stages["guard"] = GuardModerator.from_config(
                config.guard, base_dir=config.base_dir, taxonomy=config.taxonomy
            )
        return cls(**stages, uncertain_band=config.uncertain_band, on_error=config.on_error)

    def _run(self, stage: Moderator, items: Sequence[Item], side: str) -> list[ModerationResult] | None:
        try:
            results = stage.moderate(items, side=side)
        except Exception as err:  # a failing stage must not take the service down; on_error decides
            # The error's type only: its message may quote the moderated text, which stays out of the logs.
            logger.error(
                "moderation stage %s failed (%s); on_error=%s", stage.name, type(err).__name__, self.on_error
            )
            return None
        if len(results) != len(items):
            logger.error(
                "moderation stage %s returned %d results for %d items", stage.name, len(results), len(items)
            )
            return None
        return results

    def _error_result(self, stage: str, side: str, latency: float) -> ModerationResult:
        block = self.on_error == "block"
        return ModerationResult(
            flagged=block,
            action="block" if block else "allow",
            categories={},
            scores=None,
            thresholds=None,
            reason=f"cascade: {stage} failed; failing {'closed (block)' if block else 'open (allow)'}",
            backend=self.name,
            latency_s=latency,
            side=side,
            details={"error_stage": stage, "stages": [stage]},
        )

    def _in_band(self, result: ModerationResult) -> bool:
        low, high = self.band
        return result.scores is not None and any(low <= s < high for s in result.scores.values())

    def moderate(self, items: Sequence[Item], side: str = "input") -> list[ModerationResult]:
        """One merged result per item (module docstring)."""
        check_side(side)
        n = len(items)
        final: list[ModerationResult | None] = [None] * n
        stages_run: list[list[str]] = [[] for _ in range(n)]
        partial: list[list[ModerationResult]] = [[] for _ in range(n)]
        latency = [0.0] * n
        pending = list(range(n))

        for stage_name, stage in (("rules", self.rules), ("classifier", self.classifier)):
            if stage is None or not pending:
                continue
            start = time.perf_counter()
            results = self._run(stage, [items[i] for i in pending], side)
            share = (time.perf_counter() - start) / len(pending)
            still = []
            for k, i in enumerate(pending):
                latency[i] += share
                stages_run[i].append(stage_name)
                if results is None:
                    final[i] = self._error_result(stage_name, side, latency[i])
                    continue
                partial[i].append(results[k])
                if stage_name == "rules" and results[k].flagged:
                    final[i] = self._merge(partial[i], results[k], side, latency[i], stages_run[i])
                else:
                    still.append(i)
            pending = still

        # What remains passed the rules; the classifier (if any) has scored it.
        to_guard = [
            i
            for i in pending
            if self.guard is not None and (self.classifier is None or self._in_band(partial[i][-1]))
        ]
        if to_guard:
            start = time.perf_counter()
            results = self._run(self.guard, [items[i] for i in to_guard], side)
            share = (time.perf_counter() - start) / len(to_guard)
            for k, i in enumerate(to_guard):
                latency[i] += share
                stages_run[i].append("guard")
                if results is None:
                    final[i] = self._error_result("guard", side, latency[i])
                else:
                    partial[i].append(results[k])
                    final[i] = self._merge(partial[i], results[k], side, latency[i], stages_run[i])
        for i in pending:
            if final[i] is None:
                final[i] = self._merge(partial[i], partial[i][-1], side, latency[i], stages_run[i])
        return final  # type: ignore[return-value]

    def _merge(
        self,
        results: list[ModerationResult],
        decider: ModerationResult,
        side: str,
        latency: float,
        stages: list[str],
    ) -> ModerationResult:
        """One cascade result from the stages' results and the one that decided.

        Rules or classifier deciding: their categories, scores and thresholds. The guard deciding: its
        named categories plus any the classifier scored at or above the band's top (a confident score
        is not overruled), with the classifier's scores and thresholds.
        """
        categories = dict(decider.categories)
        scores, thresholds = decider.scores, decider.thresholds
        if decider.backend == "guard":
            scored = [r for r in results if r.backend == "classifier"]
            if scored:
                high = self.band[1]
                for cid, score in (scored[-1].scores or {}).items():
                    categories[cid] = categories.get(cid, False) or score >= high
                scores, thresholds = scored[-1].scores, scored[-1].thresholds
        flagged = any(categories.values())
        return ModerationResult(
            flagged=flagged,
            action="block" if flagged else "allow",
            categories=categories,
            scores=dict(scores) if scores is not None else None,
            thresholds=dict(thresholds) if thresholds is not None else None,
            reason=f"cascade[{' > '.join(stages)}] {decider.reason}",
            backend=self.name,
            latency_s=latency,
            side=side,
            details={"stages": list(stages), "decided_by": decider.backend, **decider.details},
        )
