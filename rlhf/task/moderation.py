"""Labelled moderation examples for the built-in task: unsafe requests and answers by category, and safe ones.

Each category has request templates, answer templates and fillers (what is asked for); every phrasing lives in
:mod:`rlhf.task.moderation_phrasings`, this module builds the rows. The last third of
every template list is held out: the test split phrases the harmful requests and answers in ways training
never shows, so a classifier has to generalise beyond the sentences it saw. The train split also draws on
TRAIN_REQUESTS and TRAIN_NEAR_MISSES, phrasings the test split never uses: trained on the five or six
templates per category alone, the quickstart's small classifier learnt sentence shapes and, depending on its
seed, let 6-21% of the held-out unsafe requests through. Fillers are shared by both splits: a model trained
from scratch on a thousand rows cannot know that a word it never saw is harmful
(that is what a pretrained backbone, `model_name_or_path: minilm`, adds). Safe items include benign near-misses
that share words with unsafe ones ("how do I kill a python process"), because over-refusal is a failure too.

The unsafe texts are deliberately schematic: enough to train and test a moderator, never real instructions.
"""

from __future__ import annotations

from rlhf.task.answers import answer
from rlhf.task.moderation_phrasings import (
    BENIGN_FILLERS,
    BLIND,
    GENERAL,
    NEAR_MISSES,
    SAFE_REFUSALS,
    TEST_REFUSALS,
    TRAIN_NEAR_MISSES,
    TRAIN_REQUESTS,
    UNSAFE,
    VALIDATION,
)
from rlhf.task.world import World, questions_for, rng_for

SPLITS = ("train", "validation", "test", "blind")
_EXTRA = {"validation": VALIDATION, "blind": BLIND}  # splits whose phrasings live in moderation_phrasings

CATEGORIES = ("violent_crimes", "nonviolent_crimes", "indiscriminate_weapons", "hate", "self_harm", "privacy")


def _split(items: tuple, split: str) -> tuple:
    """The first two thirds of a list for train, the last third for test."""
    if split not in ("train", "test"):
        raise ValueError(f"unknown split '{split}'; expected one of {', '.join(SPLITS)}")
    cut = len(items) - len(items) // 3
    return items[:cut] if split == "train" else items[cut:]


def _requests(category: str, split: str) -> tuple:
    """The request templates of ``category`` for ``split``: the train split adds TRAIN_REQUESTS."""
    if split in _EXTRA:
        return _EXTRA[split]["requests"][category]
    held_in = _split(UNSAFE[category]["requests"], split)
    return held_in + TRAIN_REQUESTS[category] if split == "train" else held_in


def _answers(category: str, split: str) -> tuple:
    return (
        _EXTRA[split]["answers"][category] if split in _EXTRA else _split(UNSAFE[category]["answers"], split)
    )


def _near_misses(split: str) -> tuple:
    if split in _EXTRA:
        return _EXTRA[split]["near_misses"]
    return _split(NEAR_MISSES, split) + (TRAIN_NEAR_MISSES if split == "train" else ())


def _general(split: str) -> tuple:
    return _EXTRA[split]["general"] if split in _EXTRA else _split(GENERAL, split)


def _refusals(split: str) -> tuple:
    return {"train": SAFE_REFUSALS, "test": TEST_REFUSALS}.get(split) or _EXTRA[split]["refusals"]


def _good_answer(fact, split: str, rng) -> str:
    """A correct, polite answer about ``fact`` in a phrasing of ``split`` (no two splits share one)."""
    if split == "train":
        return answer(fact, "good", rng)
    if split == "test":
        return fact.statement(fact.held_out_statement)
    return _EXTRA[split]["statements"][fact.relation].format(s=fact.subject, o=fact.object)


def _row(text: str, side: str, unsafe: bool, categories: list[str], prompt: str = "") -> dict:
    return {"text": text, "side": side, "prompt": prompt, "unsafe": int(unsafe), "categories": categories}


def moderation_rows(world: World, split: str, per_category: int) -> list[dict]:
    """Labelled rows for ``split`` (one of ``SPLITS``): about ``per_category`` unsafe items per category and as
    many safe items in all, two thirds requests (side "input") and one third answers (side "output")."""
    rng = rng_for(world.seed, "moderation", split)
    rows = []
    for category in CATEGORIES:
        spec = UNSAFE[category]
        requests, answers = _requests(category, split), _answers(category, split)
        fillers = spec["fillers"]
        for i in range(per_category):
            filler = rng.choice(fillers)
            request = rng.choice(requests).format(x=filler)
            if i % 3 < 2:
                rows.append(_row(request, "input", True, [category]))
            else:
                rows.append(_row(rng.choice(answers).format(x=filler), "output", True, [category], request))
    n_safe = per_category * len(CATEGORIES)
    near_misses, general = _near_misses(split), _general(split)
    for i in range(n_safe):
        kind = i % 8
        if kind in (0, 1):  # near-miss request, then its benign answer
            request, reply = rng.choice(near_misses)
            rows.append(
                _row(request, "input", False, []) if kind == 0 else _row(reply, "output", False, [], request)
            )
        elif kind in (2, 3):  # a question about the world, then a good answer
            fact = rng.choice(world.facts)
            request = rng.choice(questions_for(fact.relation, split)).format(s=fact.subject)
            if kind == 2:
                rows.append(_row(request, "input", False, []))
            else:
                rows.append(_row(_good_answer(fact, split, rng), "output", False, [], request))
        elif kind == 4:  # everyday request
            request, _ = rng.choice(general)
            rows.append(_row(request, "input", False, []))
        elif kind in (6, 7):  # an unsafe template asking for something harmless
            category = rng.choice(CATEGORIES)
            template = rng.choice(_requests(category, split))
            rows.append(_row(template.format(x=rng.choice(BENIGN_FILLERS[category])), "input", False, []))
        else:  # a refusal of an unsafe request is a safe answer
            category = rng.choice(CATEGORIES)
            spec = UNSAFE[category]
            request = rng.choice(_requests(category, split)).format(x=rng.choice(spec["fillers"]))
            rows.append(_row(rng.choice(_refusals(split)), "output", False, [], request))
    rng.shuffle(rows)
    return rows


def unsafe_requests(split: str) -> list[tuple[str, str]]:
    """Every (request, category) pair of ``split``'s templates and every filler (for pipeline block-rate checks)."""
    pairs = []
    for category in CATEGORIES:
        spec = UNSAFE[category]
        for template in _requests(category, split):
            pairs += [(template.format(x=f), category) for f in spec["fillers"]]
    return pairs


def safe_requests(world: World, split: str) -> list[str]:
    """Safe requests of ``split``: near-misses, everyday requests and one question about each fact."""
    near_misses = _EXTRA[split]["near_misses"] if split in _EXTRA else _split(NEAR_MISSES, split)
    texts = [q for q, _ in near_misses] + [q for q, _ in _general(split)]
    rng = rng_for(world.seed, "safe-requests", split)
    for fact in world.facts:
        texts.append(rng.choice(questions_for(fact.relation, split)).format(s=fact.subject))
    return texts
