"""Pairwise accuracy of a reward model: the share of preference pairs whose chosen answer scores higher."""

import datasets
import evaluate

from rlhf.statistics import pairwise_accuracy


class PairwiseAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Share of pairs whose chosen answer's reward is strictly higher than the rejected one's.",
            citation="",
            inputs_description="chosen: reward of each chosen answer; rejected: reward of each rejected answer.",
            features=datasets.Features(
                {"chosen": datasets.Value("float64"), "rejected": datasets.Value("float64")}
            ),
        )

    def _compute(self, chosen, rejected):
        return {"pairwise_accuracy": pairwise_accuracy(chosen, rejected)}
