"""The project's metrics load offline with `evaluate.load(path)` and give the numbers the stages compute."""

import evaluate
import pytest

from rlhf.metrics import METRICS, metric_path
from rlhf.statistics import mean_rank_correlation, pairwise_accuracy
from rlhf.task import GoldJudge, World, builtin_rows


def test_pairwise_accuracy_module_matches_the_stage_function():
    chosen, rejected = [1.0, 0.2, 3.0, -1.0], [0.5, 0.9, 1.0, -1.0]
    result = evaluate.load(metric_path("pairwise_accuracy")).compute(chosen=chosen, rejected=rejected)
    assert result == {"pairwise_accuracy": pairwise_accuracy(chosen, rejected)} == {"pairwise_accuracy": 0.5}


def test_rank_correlation_module_matches_the_stage_function():
    scores = [[3.0, 2.0, 1.0], [1.0, 3.0, 2.0]]
    gold = [[1.0, 0.4, -1.0], [1.0, 0.4, -1.0]]
    result = evaluate.load(metric_path("rank_correlation")).compute(scores=scores, gold=gold)
    assert result["rank_correlation"] == pytest.approx(mean_rank_correlation(scores, gold))
    assert result["rank_correlation"] == pytest.approx((1.0 - 1 / 3) / 2)


def test_gold_judge_module_scores_built_in_answers_like_the_judge():
    rows = builtin_rows("sft")["test"][:20]
    prompts = [r["prompt"][0]["content"] for r in rows]
    answers = [r["completion"][0]["content"] for r in rows]
    answers[0] = "I am not able to answer that."  # one refusal: -0.5 and not correct
    judge = GoldJudge(World.generate(0))
    result = evaluate.load(metric_path("gold_judge"), "0").compute(prompts=prompts, answers=answers)
    assert result["gold_score"] == pytest.approx(
        sum(judge.score(p, a) for p, a in zip(prompts, answers, strict=True)) / 20
    )
    assert result["gold_correct"] == pytest.approx(19 / 20)


def test_an_unknown_metric_name_is_refused():
    assert len(METRICS) == 3
    with pytest.raises(ValueError, match="unknown metric 'accuracy'"):
        metric_path("accuracy")
