"""A seeded small world of people and facts about them, and the phrasings used to talk about it.

Every person has one value for each relation (the city they live in, their job, their pet, their favourite
colour). Each relation has a few *statement* templates (prose for the pretraining corpus; the object always
comes last, so a prefix of the sentence is a fact-completion prompt) and a few *question* templates (chat
prompts for SFT, preference data and RL).

Held-out phrasings make the metrics mean something:

- for every fact one statement template is held out: the corpus states the fact in the other phrasings only,
  and the fact-completion test asks for it in the held-out one;
- the last two question templates of each relation never appear in training data; the test splits use them.

Everything is derived from ``random.Random`` seeded with strings, so the same seed gives the same world on
every machine and Python version.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import asdict, dataclass

NAMES = (
    "Alma", "Bruno", "Clara", "Dario", "Elena", "Felix", "Greta", "Hugo", "Ines", "Jonas", "Kira", "Lukas",
    "Mira", "Nils", "Olga", "Pablo", "Quinn", "Rosa", "Sven", "Tara", "Ugo", "Vera", "Wim", "Xenia", "Yusuf",
    "Zora", "Anton", "Bea", "Cyril", "Dora", "Emil", "Fiona", "Gustav", "Hanna", "Ivo", "Jana", "Karl",
    "Lena", "Milo", "Nora", "Oskar", "Petra", "Ralf", "Selma", "Timo", "Ulla", "Viktor", "Wanda", "Yara",
    "Zeno", "Arne", "Birte", "Conrad", "Dagny", "Erik", "Frida", "Gregor", "Helga", "Igor", "Julia",
)  # fmt: skip

RELATIONS = ("city", "job", "pet", "colour")

OBJECTS = {
    "city": ("Oslo", "Lima", "Cairo", "Dublin", "Quito", "Perth", "Riga", "Turin", "Austin", "Kyoto"),
    "job": (
        "baker",
        "nurse",
        "pilot",
        "farmer",
        "lawyer",
        "painter",
        "teacher",
        "plumber",
        "dentist",
        "sailor",
    ),
    "pet": ("cat", "dog", "parrot", "rabbit", "hamster", "turtle", "goat", "ferret"),
    "colour": ("red", "blue", "green", "yellow", "purple", "orange", "silver", "black"),
}

# Statement templates end with the object, so the text before "{o}" is a completion prompt.
STATEMENTS = {
    "city": (
        "{s} lives in {o}.",
        "{s} has a home in {o}.",
        "The home town of {s} is {o}.",
        "{s} resides in the city of {o}.",
        "Every morning {s} walks through the streets of {o}.",
    ),
    "job": (
        "{s} works as a {o}.",
        "{s} earns a living as a {o}.",
        "By trade, {s} is a {o}.",
        "The job of {s} is {o}.",
        "Everyone knows that {s} is a skilled {o}.",
    ),
    "pet": (
        "{s} owns a pet {o}.",
        "At home, {s} keeps a {o}.",
        "The pet of {s} is a {o}.",
        "{s} takes care of a {o}.",
        "Each evening {s} feeds a {o}.",
    ),
    "colour": (
        "The favourite colour of {s} is {o}.",
        "{s} likes the colour {o}.",
        "Of all colours, {s} prefers {o}.",
        "{s} always wears something {o}.",
        "The walls in the house of {s} are painted {o}.",
    ),
}

# One phrasing per relation that only the pretraining corpus's validation split uses, so that its perplexity is
# measured on sentences the training split never contains (the fact-completion probe keeps each fact's
# ``held_out_statement`` from STATEMENTS).
VALIDATION_STATEMENTS = {
    "city": "Letters for {s} are delivered to an address in {o}.",
    "job": "For many years now {s} has been employed as a {o}.",
    "pet": "Neighbours often spot {s} outside with a {o}.",
    "colour": "Ask {s} about colours and the answer will be {o}.",
}
# And one per relation for the blind splits (fact completion and moderation's good answers).
BLIND_STATEMENTS = {
    "city": "{s} has made a home in {o}.",
    "job": "These days {s} works full time as a {o}.",
    "pet": "At home {s} looks after a pet {o}.",
    "colour": "The colour {s} likes most is {o}.",
}

# The last HELD_OUT_QUESTIONS templates of each relation are reserved for the test splits. Every form of
# question (what/which/tell me/do you know) appears in training for every relation, and every held-out
# question has a cue word seen in training: a held-out question is a new combination, not a new language.
QUESTIONS = {
    "city": (
        "Where does {s} live?",
        "Which city is {s} from?",
        "Tell me where {s} lives.",
        "What is the home town of {s}?",
        "In which city does {s} live?",
        "Do you know which city {s} calls home?",
    ),
    "job": (
        "What does {s} do for a living?",
        "What is the job of {s}?",
        "Do you know what work {s} does?",
        "Tell me how {s} earns money.",
        "Which job does {s} have?",
        "What work does {s} do?",
    ),
    "pet": (
        "What pet does {s} have?",
        "Which animal does {s} keep?",
        "Tell me about the pet of {s}.",
        "Do you know which pet lives with {s}?",
        "What kind of pet does {s} own?",
        "Which animal does {s} look after?",
    ),
    "colour": (
        "What is the favourite colour of {s}?",
        "Which colour does {s} like best?",
        "Tell me the favourite colour of {s}.",
        "Do you know what colour {s} prefers?",
        "What colour does {s} prefer?",
        "Which colour does {s} love most?",
    ),
}
HELD_OUT_QUESTIONS = 2

# Question phrasings of the validation splits (for choosing settings) and of the blind splits (a re-check of
# the finished recipe). Neither shares a template with QUESTIONS or with each other. The blind ones were
# written in one go, before any model was evaluated on them, and are not to be tuned on.
VALIDATION_QUESTIONS = {
    "city": ("Which town does {s} live in?", "Where is the home of {s}?"),
    "job": ("What is the profession of {s}?", "How does {s} earn a living?"),
    "pet": ("Which pet does {s} care for?", "What animal shares a home with {s}?"),
    "colour": ("Which colour does {s} find the nicest?", "What colour would {s} pick?"),
}
BLIND_QUESTIONS = {
    "city": (
        "Can you tell me the city where {s} lives?",
        "{s} lives in which city?",
        "Name the town {s} comes from.",
    ),
    "job": (
        "What is the occupation of {s}?",
        "What kind of work does {s} do?",
        "{s} works in which trade?",
    ),
    "pet": (
        "Name the pet that {s} has.",
        "What sort of animal does {s} have at home?",
        "{s} keeps which pet?",
    ),
    "colour": (
        "What colour does {s} like the most?",
        "Name the favourite colour of {s}.",
        "If {s} had to choose one colour, which would it be?",
    ),
}
QUESTION_SPLITS = ("train", "validation", "test", "blind")


def rng_for(seed: int, *keys: object) -> random.Random:
    """A random generator determined by ``seed`` and ``keys`` (string seeding is stable across runs)."""
    return random.Random(":".join(str(k) for k in (seed, *keys)))


def stable_index(n: int, *keys: object) -> int:
    """A deterministic index in ``range(n)`` derived from ``keys`` (not from Python's salted ``hash``)."""
    digest = hashlib.sha256(":".join(str(k) for k in keys).encode()).digest()
    return int.from_bytes(digest[:8], "big") % n


@dataclass(frozen=True)
class Fact:
    """One (subject, relation, object) triple and the statement template the corpus never uses for it."""

    subject: str
    relation: str
    object: str
    held_out_statement: int

    def statement(self, template: int) -> str:
        return STATEMENTS[self.relation][template].format(s=self.subject, o=self.object)

    def train_statements(self) -> list[int]:
        """Indices of the statement templates the corpus may use for this fact."""
        return [i for i in range(len(STATEMENTS[self.relation])) if i != self.held_out_statement]

    def completion_prompt(self, split: str = "test") -> str:
        """A statement the training corpus never makes about this fact, up to (not including) the object:
        the fact's held-out corpus phrasing for "test", the validation or blind phrasing otherwise."""
        template = {"validation": VALIDATION_STATEMENTS, "blind": BLIND_STATEMENTS}.get(split, {}).get(
            self.relation
        ) or STATEMENTS[self.relation][self.held_out_statement]
        return template.split("{o}")[0].format(s=self.subject).rstrip()


@dataclass(frozen=True)
class World:
    """A deterministic small world: ``num_people`` people with one object per relation each."""

    seed: int
    people: tuple[str, ...]
    facts: tuple[Fact, ...]

    @classmethod
    def generate(cls, seed: int = 0, num_people: int = 24) -> World:
        """The world of ``seed`` with ``num_people`` people (at most ``len(NAMES)``)."""
        if not 1 <= num_people <= len(NAMES):
            raise ValueError(f"num_people must be between 1 and {len(NAMES)}, got {num_people}")
        rng = rng_for(seed, "world")
        people = tuple(rng.sample(NAMES, num_people))
        facts = []
        for person in people:
            for relation in RELATIONS:
                obj = rng.choice(OBJECTS[relation])
                held_out = stable_index(len(STATEMENTS[relation]), seed, person, relation)
                facts.append(Fact(person, relation, obj, held_out))
        return cls(seed, people, tuple(facts))

    def lookup(self, subject: str, relation: str) -> str | None:
        """The object of ``(subject, relation)``, or None when the world has no such fact."""
        for fact in self.facts:
            if fact.subject == subject and fact.relation == relation:
                return fact.object
        return None

    def facts_about(self, subject: str) -> list[Fact]:
        return [fact for fact in self.facts if fact.subject == subject]

    def to_dict(self) -> dict:
        return {"seed": self.seed, "people": list(self.people), "facts": [asdict(f) for f in self.facts]}


def training_questions(relation: str) -> tuple[str, ...]:
    return QUESTIONS[relation][:-HELD_OUT_QUESTIONS]


def held_out_questions(relation: str) -> tuple[str, ...]:
    return QUESTIONS[relation][-HELD_OUT_QUESTIONS:]


def questions_for(relation: str, split: str) -> tuple[str, ...]:
    """The question templates of ``split`` (one of ``QUESTION_SPLITS``) for ``relation``."""
    if split == "train":
        return training_questions(relation)
    if split == "test":
        return held_out_questions(relation)
    if split == "validation":
        return VALIDATION_QUESTIONS[relation]
    if split == "blind":
        return BLIND_QUESTIONS[relation]
    raise ValueError(f"unknown split '{split}'; expected one of {', '.join(QUESTION_SPLITS)}")
