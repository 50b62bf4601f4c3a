"""Cascade: rules first, classifier next, guard only for uncertain scores; fail closed or open on errors."""

import pytest

from rlhf.moderation import ModerationConfigError, ModerationResult, build_moderator
from rlhf.moderation.base import make_result
from rlhf.moderation.cascade import CascadeModerator


class FakeScorer:
    """A scoring moderator: each text's score for category "hate" is looked up in a table."""

    def __init__(self, name, table, threshold=0.5, fail=False):
        self.name, self.table, self.threshold, self.fail = name, table, threshold, fail
        self.seen = []

    def moderate(self, items, side="input"):
        if self.fail:
            raise RuntimeError("backend down")
        self.seen.extend(items)
        out = []
        for text in items:
            score = self.table.get(text, 0.0)
            named = score >= self.threshold
            categories = {"hate": named} if self.name != "guard" else {"hate": named and text != "unnamed"}
            if self.name == "guard" and named and text == "unnamed":
                categories["privacy"] = True
            out.append(
                make_result(
                    categories=categories,
                    scores={"hate": score},
                    thresholds={"hate": self.threshold},
                    reason=f"{self.name}: {score}",
                    backend=self.name,
                    latency_s=0.001,
                    side=side,
                )
            )
        return out


@pytest.fixture
def stages():
    rules = build_moderator({"backend": "rules"})
    classifier = FakeScorer(
        "classifier", {"sure": 0.95, "maybe": 0.5, "maybe-bad": 0.4, "fine": 0.05, "confident+": 0.85}
    )
    guard = FakeScorer("guard", {"maybe-bad": 0.9, "maybe": 0.1})
    return rules, classifier, guard


def test_each_stage_sees_only_what_the_previous_left_undecided(stages):
    rules, classifier, guard = stages
    cascade = CascadeModerator(rules, classifier, guard, uncertain_band=(0.2, 0.8))
    texts = ["how to make a b0mb", "sure", "maybe", "maybe-bad", "fine"]
    results = cascade.moderate(texts, side="input")
    assert classifier.seen == ["sure", "maybe", "maybe-bad", "fine"]  # the rule match never reaches it
    assert guard.seen == ["maybe", "maybe-bad"]  # only scores inside [0.2, 0.8)
    assert [r.flagged for r in results] == [True, True, False, True, False]
    assert [r.details["decided_by"] for r in results] == [
        "rules",
        "classifier",
        "guard",
        "guard",
        "classifier",
    ]
    assert results[0].details["stages"] == ["rules"]
    assert results[3].details["stages"] == ["rules", "classifier", "guard"]
    assert results[2].scores == {"hate": 0.5}  # the classifier's scores travel with a guard decision
    assert all(r.backend == "cascade" and r.action == ("block" if r.flagged else "allow") for r in results)
    assert results[0].categories["indiscriminate_weapons"] and results[0].reason.startswith("cascade[rules]")


def test_without_a_guard_the_classifier_thresholds_decide(stages):
    rules, classifier, _ = stages
    results = CascadeModerator(rules, classifier).moderate(["maybe", "maybe-bad", "fine"])
    assert [r.flagged for r in results] == [True, False, False]


def test_guard_cannot_overrule_a_confident_classifier_category(stages):
    rules, _, guard = stages
    classifier = FakeScorer("classifier", {"unnamed": 0.85, "mixed": 0.5})
    classifier.table["mixed"] = 0.5
    cascade = CascadeModerator(rules, classifier, guard, uncertain_band=(0.2, 0.9))
    [result] = cascade.moderate(["mixed"])
    assert not result.flagged  # guard says safe, classifier was unsure
    guard.table["unnamed"] = 0.9
    [result] = cascade.moderate(["unnamed"])
    assert result.categories == {"hate": False, "privacy": True}  # the guard's own category
    guard.table["unnamed"] = 0.0
    [result] = cascade.moderate(["unnamed"])
    assert not result.flagged  # 0.85 < band top 0.9: the guard decides


@pytest.mark.parametrize(("on_error", "blocked"), [("block", True), ("allow", False)])
def test_on_error_fails_closed_or_open(stages, on_error, blocked):
    rules, _, guard = stages
    broken = FakeScorer("classifier", {}, fail=True)
    cascade = CascadeModerator(rules, broken, guard, on_error=on_error)
    results = cascade.moderate(["hello", "how to make a bomb"])
    assert results[0].flagged is blocked and results[0].action == ("block" if blocked else "allow")
    assert results[0].details["error_stage"] == "classifier" and "failed" in results[0].reason
    assert results[1].flagged  # the rules decided before the failing stage ran


def test_from_config_builds_the_stages_present():
    cascade = build_moderator({"backend": "cascade", "rules": {}, "on_error": "allow"})
    assert isinstance(cascade, CascadeModerator) and cascade.classifier is None and cascade.guard is None
    [r] = cascade.moderate(["I want to kill myself"])
    assert r.flagged and r.categories["self_harm"]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"backend": "cascade"}, "at least one"),
        ({"backend": "cascade", "rules": {}, "on_error": "retry"}, "on_error"),
        ({"backend": "cascade", "rules": {}, "uncertain_band": [0.9, 0.1]}, "uncertain_band"),
        ({"backend": "cascade", "rules": {}, "clasifier": {}}, "unknown key"),
        ({"backend": "regex"}, "backend"),
    ],
)
def test_config_errors(config, message):
    with pytest.raises(ModerationConfigError, match=message):
        build_moderator(config)


def test_result_schema_round_trips_to_dict():
    [r] = build_moderator({"backend": "rules"}).moderate(["hello"])
    assert isinstance(r, ModerationResult)
    d = r.to_dict()
    assert set(d) >= {
        "flagged",
        "action",
        "categories",
        "scores",
        "thresholds",
        "reason",
        "backend",
        "latency_s",
        "side",
    }


def test_a_category_above_the_band_stays_flagged_when_another_sends_the_item_to_the_guard(stages):
    rules, _, guard = stages

    class TwoScores:
        name = "classifier"

        def moderate(self, items, side="input"):
            scores = {"hate": 0.95, "privacy": 0.5}
            return [
                make_result(
                    categories={c: s >= 0.5 for c, s in scores.items()},
                    scores=scores,
                    thresholds=None,
                    reason="two",
                    backend="classifier",
                    latency_s=0.0,
                    side=side,
                )  # fmt: skip
                for _ in items
            ]

    [result] = CascadeModerator(rules, TwoScores(), guard, uncertain_band=(0.2, 0.8)).moderate(["anything"])
    assert guard.seen == ["anything"] and result.details["decided_by"] == "guard"
    assert result.flagged and result.categories == {"hate": True, "privacy": False}


@pytest.mark.parametrize(("on_error", "blocked"), [("block", True), ("allow", False)])
def test_a_failing_guard_fails_closed_or_open_only_for_the_items_it_was_asked_about(
    stages, on_error, blocked, caplog
):
    rules, classifier, _ = stages
    broken = FakeScorer("guard", {}, fail=True)
    cascade = CascadeModerator(rules, classifier, broken, uncertain_band=(0.2, 0.8), on_error=on_error)
    with caplog.at_level("DEBUG"):
        results = cascade.moderate(["sure", "maybe", "fine"])
    assert [r.flagged for r in results] == [True, blocked, False]  # only "maybe" needed the guard
    assert results[1].details["error_stage"] == "guard" and results[1].action == (
        "block" if blocked else "allow"
    )
    assert "guard failed" in results[1].reason and "RuntimeError" in caplog.text
    assert "backend down" not in caplog.text and "maybe" not in caplog.text  # no error text, no item text
