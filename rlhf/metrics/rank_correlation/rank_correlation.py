"""How well a reward model orders all the answers of a prompt: mean Kendall tau-b against gold scores."""

import datasets
import evaluate

from rlhf.statistics import mean_rank_correlation


class RankCorrelation(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Mean over prompts of Kendall's tau-b between model scores and gold scores of the "
            "prompt's answers (prompts whose answers all tie are left out).",
            citation="",
            inputs_description="scores: per prompt, the model's score of each answer; gold: the same answers' "
            "gold scores, in the same order.",
            features=datasets.Features(
                {
                    "scores": datasets.Sequence(datasets.Value("float64")),
                    "gold": datasets.Sequence(datasets.Value("float64")),
                }
            ),
        )

    def _compute(self, scores, gold):
        return {"rank_correlation": mean_rank_correlation(scores, gold)}
