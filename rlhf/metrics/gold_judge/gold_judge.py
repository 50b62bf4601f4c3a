"""The built-in task's gold judge as a metric: mean gold score and share of correct answers.

The configuration name is the built-in task's seed (``evaluate.load(path, "0")``); the judge knows the
world of that seed with the default number of people.
"""

import datasets
import evaluate

from rlhf.scoring import builtin_judge, gold_scores


class GoldJudge(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Mean gold-judge score and share of correct answers on built-in task questions.",
            citation="",
            inputs_description="prompts: the user's question (text); answers: the assistant's answer (text).",
            features=datasets.Features(
                {"prompts": datasets.Value("string"), "answers": datasets.Value("string")}
            ),
        )

    def _compute(self, prompts, answers):
        seed = int(self.config_name) if self.config_name not in (None, "default") else 0
        scores = gold_scores(builtin_judge(seed), list(prompts), list(answers))
        n = max(len(answers), 1)
        return {"gold_score": sum(scores["score"]) / n, "gold_correct": sum(scores["correct"]) / n}
