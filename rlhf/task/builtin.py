"""The built-in task's datasets, one ``datasets.DatasetDict`` per kind, in TRL's standard formats.

    load_builtin("pretrain")    train/validation: text                       (prose about the world)
    load_builtin("facts")       validation/test/blind: prompt, answer, subject, relation (held-out phrasings)
    load_builtin("sft")         train/validation/test/blind: prompt, completion  (conversational; train is mixed quality)
    load_builtin("preference")  train/validation/test/blind: prompt, chosen, rejected, margin (ranked by the gold judge)
    load_builtin("prompts")     train/validation/test/blind: prompt         (prompt-only, for RL and evaluation)
    load_builtin("moderation")  train/validation/test/blind: text, side, prompt, unsafe, categories

Each question split has its own question templates (``rlhf.task.world.questions_for``): choose settings on
``validation``, report ``test``; ``blind`` is a re-check in phrasings written before any model was evaluated on
them. Same seed and knobs, same rows in the same order.
"""

from __future__ import annotations

import functools
from typing import Any

from rlhf.task.answers import (
    GENERAL_SENTENCES,
    STYLES,
    VALIDATION_SENTENCES,
    answer,
    corpus_statement,
    sample_style,
    swap_object,
)
from rlhf.task.judge import GoldJudge
from rlhf.task.moderation import moderation_rows
from rlhf.task.world import QUESTION_SPLITS, VALIDATION_STATEMENTS, World, questions_for, rng_for

BUILTIN_KINDS = ("pretrain", "facts", "sft", "preference", "prompts", "moderation")

DEFAULTS = {
    "num_people": 24,  # 4 facts each; the quickstart's pretraining budget is sized for this
    "docs_per_person": 48,  # training documents per person, each stating all 4 facts
    "aside_rate": 0.5,  # chance of an aside after the subject, and of a lead-in, per corpus statement
    "sft_copies": 2,  # demonstrations per (fact, training question template)
    "preference_copies": 4,  # training preference pairs per (fact, question template); test keeps one
    "contrast_copies": 1,  # extra training pairs per (fact, question template) that differ only in the object
    "margin_scale": 0.5,  # margin column = this x the gold judge's score gap (0: no margin column)
    "moderation_per_category": 180,  # unsafe training items per category (test: a third of it)
}


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def _questions(world: World, split: str):
    """(fact, question) for every fact and every question template of ``split``."""
    for fact in world.facts:
        for template in questions_for(fact.relation, split):
            yield fact, template.format(s=fact.subject)


def _document(world: World, person: str, rng, split: str, aside_rate: float) -> str:
    facts = world.facts_about(person)
    rng.shuffle(facts)
    if split == "validation":
        return " ".join(VALIDATION_STATEMENTS[f.relation].format(s=f.subject, o=f.object) for f in facts)
    return " ".join(corpus_statement(fact, rng, aside_rate) for fact in facts)


def _chatter(rng, split: str) -> str:
    """A document of everyday sentences: the general language every pretraining corpus also holds."""
    sentences = VALIDATION_SENTENCES if split == "validation" else GENERAL_SENTENCES
    return " ".join(rng.sample(sentences, rng.randint(3, 6)))


def pretrain_rows(world: World, docs_per_person: int, aside_rate: float = 0.0) -> dict[str, list[dict]]:
    """Biographies (every fact of one person, statements varied by ``aside_rate``) and, one in five, everyday
    chatter.

    The validation split states the facts in phrasings and uses everyday sentences that training never
    contains, so its perplexity is a held-out figure, not a memorised one.
    """
    splits = {}
    for split, n in (("train", docs_per_person), ("validation", max(docs_per_person // 8, 1))):
        rng = rng_for(world.seed, "pretrain", split)
        docs = [_document(world, person, rng, split, aside_rate) for person in world.people for _ in range(n)]
        docs += [_chatter(rng, split) for _ in range(len(docs) // 4)]
        rng.shuffle(docs)
        splits[split] = [{"text": doc} for doc in docs]
    return splits


def facts_rows(world: World) -> dict[str, list[dict]]:
    """Fact-completion prompts in phrasings training never states the fact in: one split per phrasing set."""
    return {
        split: [
            {
                "prompt": f.completion_prompt(split),
                "answer": f.object,
                "subject": f.subject,
                "relation": f.relation,
            }
            for f in world.facts
        ]
        for split in ("validation", "test", "blind")
    }


def sft_rows(world: World, copies: int) -> dict[str, list[dict]]:
    rng = rng_for(world.seed, "sft")
    train = [
        {"prompt": _user(q), "completion": _assistant(answer(fact, sample_style(rng), rng))}
        for fact, q in _questions(world, "train")
        for _ in range(copies)
    ]
    splits = {"train": train}
    for split in ("test", "validation", "blind"):  # test first: its rows stay what they were
        splits[split] = [
            {"prompt": _user(q), "completion": _assistant(answer(fact, "good", rng))}
            for fact, q in _questions(world, split)
        ]
    return {split: splits[split] for split in QUESTION_SPLITS}


def preference_rows(
    world: World, copies: int = 1, contrast_copies: int = 0, margin_scale: float = 0.0
) -> dict[str, list[dict]]:
    """Pairs per question (``copies`` for train, one for test): usually a good answer against a flawed one,
    sometimes two flawed ones. The train split also gets ``contrast_copies`` minimal pairs per question: an
    answer that names the right object against the same answer naming a wrong one, the signal that teaches a
    reward model to check facts and not only style. With ``margin_scale``, every row has a ``margin``: that
    times the judge's score gap, which TRL's ``RewardTrainer`` asks the reward gap to exceed (a wrong fact,
    gap 2.0, must be pushed further apart than a rambling sentence, gap 0.3)."""
    judge = GoldJudge(world)

    def row(q: str, chosen: str, rejected: str, gap: float) -> dict:
        pair = {"prompt": _user(q), "chosen": _assistant(chosen), "rejected": _assistant(rejected)}
        if margin_scale:
            pair["margin"] = margin_scale * gap
        return pair

    splits = {}
    for split in QUESTION_SPLITS:
        rng = rng_for(world.seed, "preference", split)
        rows = []
        questions = list(_questions(world, split)) * (copies if split == "train" else 1)
        for fact, q in questions:
            while True:
                first = "good" if rng.random() < 0.7 else rng.choice(STYLES[1:])
                second = rng.choice([s for s in STYLES if s != first])
                a, b = answer(fact, first, rng), answer(fact, second, rng)
                score_a, score_b = judge.score(q, a), judge.score(q, b)
                if score_a != score_b:
                    break
            chosen, rejected = (a, b) if score_a > score_b else (b, a)
            rows.append(row(q, chosen, rejected, abs(score_a - score_b)))
        splits[split] = rows
    rng = rng_for(world.seed, "preference", "contrast")  # its own stream: the pairs above stay as they are
    for fact, q in list(_questions(world, "train")) * contrast_copies:
        right = answer(fact, rng.choice(("good", "good", "rude", "rambling")), rng)
        wrong = swap_object(fact, right, rng)
        splits["train"].append(row(q, right, wrong, judge.score(q, right) - judge.score(q, wrong)))
    return splits


def answer_sets(split: str = "test", seed: int = 0, **knobs: Any) -> list[dict]:
    """One row per question of ``split``: the question, an answer in every style (``STYLES``) and each answer's
    gold score, for measuring how well a reward model ranks all the answers of a prompt.

    Returns ``[{"prompt": messages, "answers": [str, ...], "gold": [float, ...]}, ...]``.
    """
    options = {**DEFAULTS, **{k: v for k, v in knobs.items() if v is not None}}
    world = World.generate(seed, options["num_people"])
    judge = GoldJudge(world)
    rng = rng_for(world.seed, "answer-sets", split)
    rows = []
    for fact, q in _questions(world, split):
        answers = [answer(fact, style, rng) for style in STYLES]
        rows.append({"prompt": _user(q), "answers": answers, "gold": [judge.score(q, a) for a in answers]})
    return rows


def prompts_rows(world: World) -> dict[str, list[dict]]:
    return {split: [{"prompt": _user(q)} for _, q in _questions(world, split)] for split in QUESTION_SPLITS}


@functools.lru_cache(maxsize=16)
def _rows(kind: str, seed: int, knobs: tuple) -> dict[str, list[dict]]:
    options = dict(knobs)
    world = World.generate(seed, options["num_people"])
    if kind == "pretrain":
        return pretrain_rows(world, options["docs_per_person"], options["aside_rate"])
    if kind == "facts":
        return facts_rows(world)
    if kind == "sft":
        return sft_rows(world, options["sft_copies"])
    if kind == "preference":
        return preference_rows(
            world, options["preference_copies"], options["contrast_copies"], options["margin_scale"]
        )
    if kind == "prompts":
        return prompts_rows(world)
    per_category = options["moderation_per_category"]
    return {
        split: moderation_rows(world, split, per_category if split == "train" else max(per_category // 3, 1))
        for split in QUESTION_SPLITS
    }


def builtin_rows(kind: str, seed: int = 0, **knobs: Any) -> dict[str, list[dict]]:
    """The rows of every split of ``kind`` as plain dicts (see the module docstring for the columns)."""
    if kind not in BUILTIN_KINDS:
        raise ValueError(f"unknown built-in dataset '{kind}'; expected one of {', '.join(BUILTIN_KINDS)}")
    unknown = sorted(set(knobs) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown built-in task option(s) {unknown}; expected some of {sorted(DEFAULTS)}")
    options = {**DEFAULTS, **{k: v for k, v in knobs.items() if v is not None}}
    return _rows(kind, int(seed), tuple(sorted(options.items())))


def load_builtin(kind: str, seed: int = 0, **knobs: Any):
    """The built-in task's ``kind`` dataset as a ``datasets.DatasetDict`` (see the module docstring)."""
    from datasets import Dataset, DatasetDict

    return DatasetDict(
        {split: Dataset.from_list(rows) for split, rows in builtin_rows(kind, seed, **knobs).items()}
    )
