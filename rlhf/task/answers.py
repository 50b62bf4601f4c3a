"""Answers of known quality to the world's questions: the raw material of SFT demonstrations and preferences.

Like human demonstrations, they vary: most are good, some are rude, rambling, or wrong. The gold judge
ranks them; nothing here decides quality by itself except the style name.
"""

from __future__ import annotations

import random
import re

from rlhf.task.world import OBJECTS, STATEMENTS, Fact

RUDE_OPENERS = (
    "Ugh, fine.",
    "Obviously,",
    "Seriously? Everyone knows this.",
    "Whatever.",
    "What a waste of my time.",
    "Use your brain next time.",
)
RUDE_CLOSERS = (
    "Figure it out yourself next time.",
    "Stop asking such dumb questions.",
    "How do you not know this?",
)
FILLERS = (
    "I could say a lot more about this.",
    "People ask me this kind of thing all the time.",
    "Anyway, that is simply how things are.",
    "There is a long story behind it, of course.",
    "Some say it has always been that way.",
    "It is one of those details worth remembering.",
    "Let me know if you want to hear more.",
)
REFUSALS = ("I am not able to answer that.", "Sorry, I can't help with that question.")
EVERYDAY = (
    "The weather changed quickly that afternoon.",
    "Most people enjoy a quiet walk after dinner.",
    "A good question deserves a clear answer.",
    "Some people ask many questions, and some ask none.",
    "It is polite to say thank you.",
    "Nobody likes a long answer to a short question.",
    "Rude words spoil a friendly talk.",
    "Seriously, some days everything goes wrong.",
    "The market opens early on Saturdays.",
    "Friends often help each other move house.",
)
# Sentences of the pretraining corpus's general documents: everyday prose plus the phrases that answers use,
# so that the tokenizer and the model know the words before fine-tuning (as with any real pretraining corpus).
GENERAL_SENTENCES = (
    EVERYDAY + FILLERS + RUDE_CLOSERS + REFUSALS + tuple(o for o in RUDE_OPENERS if o.endswith("."))
)

# Everyday prose that only the pretraining validation split uses (never a training sentence).
VALIDATION_SENTENCES = (
    "The bakery on the corner sold out of bread by noon.",
    "Rain kept the children indoors for most of the week.",
    "A short note can brighten somebody's day.",
    "The train was late again, so we shared a taxi.",
    "Old photographs remind us of places we have been.",
    "Cooking for a crowd takes patience and a big pot.",
    "The library stays open late during the exam season.",
    "Small gardens can still grow plenty of tomatoes.",
)

# Pretraining-corpus variety: a clause after the subject and a lead-in before a statement. A tiny model that only
# ever reads a fact in four fixed phrasings learns the phrasings, not the fact; with words of no meaning between
# the subject and the object it learns to carry the subject to the object across words it has not seen, which
# is what completing a fact in a new phrasing takes (validation fact completion 0.125 -> 0.677 at rate 0.5).
ASIDES = (
    "as everyone knows",
    "by all accounts",
    "so people say",
    "it seems",
    "if you ask around",
    "the oldest of three",
    "a quiet sort of person",
    "who talks a lot",
    "now past forty",
    "according to friends",
    "we are told",
    "to nobody's surprise",
    "who moved here long ago",
)
LEAD_INS = (
    "As it happens,",
    "In short,",
    "People say that",
    "It is true that",
    "Most friends know that",
    "For the record,",
    "Believe it or not,",
    "By the way,",
    "Of course,",
    "We all know that",
)

# SFT demonstrations: how often each style appears (must sum to 1).
SFT_STYLE_WEIGHTS = {"good": 0.55, "rude": 0.15, "rambling": 0.2, "wrong": 0.1}
STYLES = ("good", "rude", "rambling", "wrong", "refusal")


def statement(fact: Fact, rng: random.Random, obj: str | None = None) -> str:
    """The fact stated in one of its corpus phrasings (optionally with another object)."""
    template = STATEMENTS[fact.relation][rng.choice(fact.train_statements())]
    return template.format(s=fact.subject, o=obj or fact.object)


def corpus_statement(fact: Fact, rng: random.Random, aside_rate: float = 0.0) -> str:
    """The fact in one of its corpus phrasings; with probability ``aside_rate`` each, an aside follows the
    subject ("Erik, by all accounts, lives in Riga.") and a lead-in opens the sentence."""
    text = statement(fact, rng)
    if aside_rate and rng.random() < aside_rate:
        text = text.replace(fact.subject, f"{fact.subject}, {rng.choice(ASIDES)},", 1)
    if aside_rate and rng.random() < aside_rate:
        first = text if text.startswith(fact.subject) else text[0].lower() + text[1:]
        text = f"{rng.choice(LEAD_INS)} {first}"
    return text


def answer(fact: Fact, style: str, rng: random.Random) -> str:
    """An answer to a question about ``fact`` in ``style`` (one of ``STYLES``)."""
    if style == "good":
        return statement(fact, rng)
    if style == "rude":
        text = statement(fact, rng)
        if rng.random() < 0.5:
            opener = rng.choice(RUDE_OPENERS)
            if opener.endswith(",") and text.startswith("The "):
                text = "the " + text[4:]
            return f"{opener} {text}"
        return f"{text} {rng.choice(RUDE_CLOSERS)}"
    if style == "rambling":
        return " ".join([statement(fact, rng), *rng.sample(FILLERS, rng.randint(1, 3))])
    if style == "wrong":
        wrong = rng.choice([o for o in OBJECTS[fact.relation] if o != fact.object])
        return statement(fact, rng, obj=wrong)
    if style == "refusal":
        return rng.choice(REFUSALS)
    raise ValueError(f"unknown answer style '{style}'; expected one of {STYLES}")


def swap_object(fact: Fact, text: str, rng: random.Random) -> str:
    """``text`` (an answer naming ``fact``'s object once) with another object of the same relation in its place."""
    wrong = rng.choice([o for o in OBJECTS[fact.relation] if o != fact.object])
    return re.sub(rf"\b{re.escape(fact.object)}\b", wrong, text, count=1)


def sample_style(rng: random.Random) -> str:
    styles, weights = zip(*SFT_STYLE_WEIGHTS.items(), strict=True)
    return rng.choices(styles, weights=weights)[0]
