"""The built-in task: determinism, held-out phrasings, the gold judge's rankings, and `rlhf data`."""

import json
import random
import re

import pytest

from rlhf.task import CATEGORIES, GoldJudge, World, builtin_rows, fact_completion_correct, load_builtin
from rlhf.task.world import (
    QUESTION_SPLITS,
    QUESTIONS,
    STATEMENTS,
    VALIDATION_STATEMENTS,
    held_out_questions,
    questions_for,
    training_questions,
)


@pytest.fixture(scope="module")
def world():
    return World.generate(seed=0)


@pytest.fixture(scope="module")
def judge(world):
    return GoldJudge(world)


def _fact(world, relation):
    return next(f for f in world.facts if f.relation == relation)


def test_same_seed_same_world_other_seed_other_world():
    assert World.generate(3) == World.generate(3)
    assert World.generate(3).facts != World.generate(4).facts
    assert len(World.generate(0, num_people=7).facts) == 28
    with pytest.raises(ValueError, match="num_people"):
        World.generate(0, num_people=0)


def test_corpus_never_states_a_fact_in_its_held_out_phrasing(world):
    corpus = " ".join(row["text"] for split in builtin_rows("pretrain").values() for row in split)
    for fact in world.facts:
        assert fact.statement(fact.held_out_statement) not in corpus
        assert any(fact.statement(i) in corpus for i in fact.train_statements())
    facts = builtin_rows("facts")["test"]
    assert len(facts) == len(world.facts)
    for row, fact in zip(facts, world.facts, strict=True):
        assert (row["prompt"] + " " + row["answer"] + ".") == fact.statement(fact.held_out_statement)


def test_corpus_statements_carry_asides_and_lead_ins_at_the_asked_rate(world):
    from rlhf.task.answers import ASIDES, LEAD_INS, corpus_statement

    rng = random.Random(0)
    fact = _fact(world, "city")
    plain = {fact.statement(i) for i in fact.train_statements()}
    assert {corpus_statement(fact, rng, 0.0) for _ in range(50)} <= plain
    varied = [corpus_statement(fact, rng, 0.5) for _ in range(400)]
    with_aside = [t for t in varied if any(f"{fact.subject}, {a}," in t for a in ASIDES)]
    with_lead = [t for t in varied if t.startswith(LEAD_INS)]
    assert 0.4 < len(with_aside) / len(varied) < 0.6 and 0.4 < len(with_lead) / len(varied) < 0.6
    for text in varied:  # still the fact: the subject, then the object as the last word
        assert fact.subject in text and text.endswith(f" {fact.object}.")
    train_text = " ".join(row["text"] for row in builtin_rows("pretrain")["train"])
    assert any(f", {a}," in train_text for a in ASIDES)  # the corpus's default rate is not 0
    assert builtin_rows("pretrain", aside_rate=0.0)["train"] != builtin_rows("pretrain")["train"]


def test_fact_completion_splits_use_phrasings_training_never_states():
    train_text = " ".join(row["text"] for row in builtin_rows("pretrain")["train"])
    facts = builtin_rows("facts")
    prompts = {split: {row["prompt"] for row in rows} for split, rows in facts.items()}
    assert set(facts) == {"validation", "test", "blind"}
    assert sum(map(len, prompts.values())) == len(set().union(*prompts.values()))  # disjoint
    for rows in facts.values():
        for row in rows:
            assert f"{row['prompt']} {row['answer']}." not in train_text


def _sentences(rows) -> set[str]:
    return {s.strip() for row in rows for s in re.split(r"(?<=[.?!])\s+", row["text"]) if s.strip()}


def test_pretraining_validation_shares_no_sentence_and_no_template_with_training(world):
    rows = builtin_rows("pretrain")
    train, validation = _sentences(rows["train"]), _sentences(rows["validation"])
    assert validation and not train & validation
    train_text = " ".join(row["text"] for row in rows["train"])
    for fact in world.facts:  # every fact is stated in validation, never in a training phrasing
        phrasing = VALIDATION_STATEMENTS[fact.relation]
        assert phrasing.format(s=fact.subject, o=fact.object) in validation
        assert phrasing not in STATEMENTS[fact.relation]
        assert phrasing.format(s=fact.subject, o=fact.object) not in train_text


def test_every_question_split_uses_only_its_own_templates_and_shares_no_prompt(world):
    every_template = {t for split in QUESTION_SPLITS for r in QUESTIONS for t in questions_for(r, split)}
    per_split = {split: {t for r in QUESTIONS for t in questions_for(r, split)} for split in QUESTION_SPLITS}
    assert sum(len(t) for t in per_split.values()) == len(every_template)  # no template in two splits
    assert per_split["train"] == {t for r in QUESTIONS for t in training_questions(r)}
    assert per_split["test"] == {t for r in QUESTIONS for t in held_out_questions(r)}

    def templates_used(rows):
        questions = {row["prompt"][0]["content"] for row in rows}
        return {t for t in every_template for f in world.facts if t.format(s=f.subject) in questions}

    for kind in ("sft", "preference", "prompts"):
        rows = builtin_rows(kind)
        assert set(rows) == set(QUESTION_SPLITS), kind
        for split in QUESTION_SPLITS:
            assert templates_used(rows[split]) == per_split[split], (kind, split)
        prompts = {split: {r["prompt"][0]["content"] for r in rows[split]} for split in QUESTION_SPLITS}
        assert sum(len(p) for p in prompts.values()) == len(set().union(*prompts.values())), kind


def test_the_judge_reads_every_split_s_questions_right(world, judge):
    for split in QUESTION_SPLITS:
        for relation in QUESTIONS:
            for template in questions_for(relation, split):
                fact = _fact(world, relation)
                question = template.format(s=fact.subject)
                assert judge.score(question, fact.statement(0)) == 1.0, (split, template)
                assert judge.breakdown(question, "I am not able to answer that.")["correct"] is False


@pytest.mark.parametrize(
    "answer, score, correct",
    [
        ("{s} lives in {o}.", 1.0, True),
        ("{o}.", 1.0, True),
        ("{s} lives in {w}.", -1.0, False),
        ("{s} lives in {o} or maybe {w}.", -1.0, False),  # hedging between objects is wrong
        ("I am not able to answer that.", -0.5, False),
        ("Ugh, fine. {s} lives in {o}.", 1.0 - 0.6 - 0.3, True),
        ("Obviously, {s} lives in {o}.", 1.0 - 0.6, True),
        ("{s} lives in {o}. It is a nice city. I could say more. And more. And more.", 1.0 - 0.9, True),
        ("{s} lives in {o}. Step one: mix the powders.", 1.0 - 0.3 - 2.0, True),
    ],
)
def test_judge_scores_city_answers(world, judge, answer, score, correct):
    fact = _fact(world, "city")
    wrong = next(o for o in ("Oslo", "Lima") if o != fact.object)
    text = answer.format(s=fact.subject, o=fact.object, w=wrong)
    prompt = [{"role": "user", "content": f"Where does {fact.subject} live?"}]
    assert judge.score(prompt, text) == pytest.approx(score)
    assert judge.is_correct(prompt, [{"role": "assistant", "content": text}]) is correct


def test_judge_reads_every_question_template(world, judge):
    for fact in world.facts:
        for template in QUESTIONS[fact.relation]:
            assert judge.parse_question(template.format(s=fact.subject)) == (fact.subject, fact.relation)


def test_judge_without_a_question_scores_style_only(judge):
    breakdown = judge.breakdown("write a haiku about autumn", "Whatever. Leaves fall.")
    assert breakdown["correct"] is None
    assert breakdown["score"] == pytest.approx(-0.6 - 0.3)


def test_preferences_agree_with_the_judge_and_cover_every_flaw(judge):
    rows = builtin_rows("preference")
    for split in ("train", "test"):
        for row in rows[split]:
            assert judge.score(row["prompt"], row["chosen"]) > judge.score(row["prompt"], row["rejected"])
    flaws = [judge.breakdown(r["prompt"], r["rejected"]) for r in rows["train"]]
    assert any(f["rude"] for f in flaws) and any(f["rambling"] for f in flaws)
    assert any(f["correct"] is False and f["mentioned"] for f in flaws) and any(f["refusal"] for f in flaws)


def test_sft_demonstrations_are_mostly_but_not_all_good(judge):
    rows = builtin_rows("sft")
    train = [judge.breakdown(r["prompt"], r["completion"]) for r in rows["train"]]
    accuracy = sum(b["correct"] for b in train) / len(train)
    flawless = sum(b["score"] == 1.0 for b in train) / len(train)
    assert 0.8 < accuracy < 0.97  # some demonstrations are wrong: the reward model and RL have work to do
    assert 0.4 < flawless < 0.7
    for split in ("validation", "test", "blind"):  # held-out splits hold gold answers
        assert all(judge.score(r["prompt"], r["completion"]) == 1.0 for r in rows[split]), split


def test_fact_completion():
    assert fact_completion_correct("Ana lives in", " Oslo. Ana works", "Oslo")
    assert fact_completion_correct("Ana lives in", "oslo", "Oslo")
    assert not fact_completion_correct("Ana lives in", " Oslotown", "Oslo")
    assert not fact_completion_correct("Ana lives in", " the city of Oslo", "Oslo")


def test_moderation_data_is_balanced_labelled_and_held_out():
    rows = builtin_rows("moderation")
    for split in ("train", "test"):
        unsafe = [r for r in rows[split] if r["unsafe"]]
        safe = [r for r in rows[split] if not r["unsafe"]]
        assert len(unsafe) == len(safe)
        assert {c for r in unsafe for c in r["categories"]} == set(CATEGORIES)
        assert all(len(r["categories"]) == 1 for r in unsafe) and all(r["categories"] == [] for r in safe)
        assert {r["side"] for r in rows[split]} == {"input", "output"}
        assert all(r["prompt"] for r in rows[split] if r["side"] == "output")
    train_texts = {r["text"] for r in rows["train"] if r["unsafe"]}
    assert not train_texts & {r["text"] for r in rows["test"] if r["unsafe"]}
    near_miss = [r for r in rows["train"] if r["text"] == "how do I kill a python process"]
    assert near_miss and not near_miss[0]["unsafe"]


def test_moderation_train_templates_never_include_held_out_ones():
    """The extra training phrasings widen the train split only: no held-out request template (or near-miss)
    appears in training, and the test split is built from the held-out templates alone."""
    from rlhf.task.moderation import NEAR_MISSES, TRAIN_NEAR_MISSES, TRAIN_REQUESTS, UNSAFE, _requests, _split

    for category, spec in UNSAFE.items():
        held_out = set(_requests(category, "test"))
        train = set(_requests(category, "train"))
        assert held_out and held_out.isdisjoint(train)
        assert set(TRAIN_REQUESTS[category]) <= train and len(train) > len(spec["requests"])
    held_out_near_misses = {q for q, _ in _split(NEAR_MISSES, "test")}
    assert held_out_near_misses.isdisjoint(q for q, _ in TRAIN_NEAR_MISSES)
    rows = builtin_rows("moderation")
    stems = {t.split("{x}")[0] for c in UNSAFE for t in _requests(c, "test")}
    unsafe_inputs = [r["text"] for r in rows["test"] if r["unsafe"] and r["side"] == "input"]
    assert unsafe_inputs and all(any(t.startswith(stem) for stem in stems) for t in unsafe_inputs)


def test_moderation_splits_share_no_text_and_no_template():
    """Train, validation, test and blind share no row text (safe rows included: refusals, good answers,
    near-misses) and no request or answer template; only the fillers (what is asked for) are shared."""
    from rlhf.task.moderation import SPLITS, UNSAFE, _answers, _near_misses, _refusals, _requests

    rows = builtin_rows("moderation")
    assert set(rows) == set(SPLITS)
    texts = {split: {r["text"] for r in rows[split]} for split in SPLITS}
    assert sum(len(t) for t in texts.values()) == len(set().union(*texts.values()))
    for pick in (
        lambda split: {t for c in UNSAFE for t in _requests(c, split)},
        lambda split: {t for c in UNSAFE for t in _answers(c, split)},
        lambda split: {q for q, _ in _near_misses(split)},
        lambda split: set(_refusals(split)),
    ):
        per_split = [pick(split) for split in SPLITS]
        assert all(per_split) and sum(map(len, per_split)) == len(set().union(*per_split))
    for split in SPLITS:  # every split is balanced and covers every category and both sides
        unsafe = [r for r in rows[split] if r["unsafe"]]
        assert len(unsafe) * 2 == len(rows[split]) and {c for r in unsafe for c in r["categories"]} == set(
            CATEGORIES
        )
        assert {r["side"] for r in rows[split]} == {"input", "output"}


def test_load_builtin_returns_dataset_dicts_and_rejects_unknown_names():
    sft = load_builtin("sft", seed=1, num_people=5)
    assert set(sft) == set(QUESTION_SPLITS) and sft["train"].column_names == ["prompt", "completion"]
    assert len(sft["train"]) == 5 * 4 * 4 * 2
    with pytest.raises(ValueError, match="unknown built-in dataset 'sfts'"):
        load_builtin("sfts")
    with pytest.raises(ValueError, match="num_persons"):
        load_builtin("sft", num_persons=3)


def test_data_stage_writes_readable_identical_files(tmp_path, capsys):
    from rlhf.data import cli

    args = ["--num_people", "6", "--docs_per_person", "2", "--moderation_per_category", "6"]
    cli(["--output_dir", str(tmp_path / "a"), *args])
    cli(["--output_dir", str(tmp_path / "b"), *args])
    for kind_split in (
        "sft/train",
        "preference/test",
        "moderation/train",
        "pretrain/validation",
        "facts/test",
    ):
        a = (tmp_path / "a" / f"{kind_split}.jsonl").read_bytes()
        assert a == (tmp_path / "b" / f"{kind_split}.jsonl").read_bytes()
        first = json.loads(a.splitlines()[0])
        assert first == builtin_rows(kind_split.split("/")[0], num_people=6, docs_per_person=2,
                                     moderation_per_category=6)[kind_split.split("/")[1]][0]  # fmt: skip
    world = json.loads((tmp_path / "a" / "world.json").read_text())
    assert len(world["facts"]) == 24
    assert "sft/train.jsonl" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # finished data is never overwritten by accident
        cli(["--output_dir", str(tmp_path / "a"), *args])


def test_statement_templates_end_with_the_object():
    for templates in STATEMENTS.values():
        assert all(t.endswith("{o}.") for t in templates)


def test_contrast_pairs_differ_only_in_the_object_and_leave_the_other_pairs_alone(judge):
    rows = builtin_rows("preference")
    plain = builtin_rows("preference", contrast_copies=0, margin_scale=0)
    assert len(rows["train"]) == len(plain["train"]) + len(builtin_rows("prompts")["train"])
    strip = [{k: v for k, v in r.items() if k != "margin"} for r in rows["train"][: len(plain["train"])]]
    assert strip == plain["train"]
    assert [{k: v for k, v in r.items() if k != "margin"} for r in rows["test"]] == plain["test"]
    for row in rows["train"][len(plain["train"]) :]:
        chosen = judge.breakdown(row["prompt"], row["chosen"])
        rejected = judge.breakdown(row["prompt"], row["rejected"])
        assert chosen["correct"] is True and rejected["correct"] is False and len(rejected["mentioned"]) == 1
        words_c, words_r = row["chosen"][0]["content"].split(), row["rejected"][0]["content"].split()
        assert (
            len(words_c) == len(words_r) and sum(a != b for a, b in zip(words_c, words_r, strict=True)) == 1
        )


def test_preference_margins_are_half_the_gold_gap_and_never_zero(judge):
    rows = builtin_rows("preference")
    for split in ("train", "test"):
        for row in rows[split]:
            gap = judge.score(row["prompt"], row["chosen"]) - judge.score(row["prompt"], row["rejected"])
            assert row["margin"] == pytest.approx(0.5 * gap) and gap >= 0.1 - 1e-9
    assert "margin" not in builtin_rows("preference", margin_scale=0)["train"][0]


def test_judge_scores_equally_flawed_answers_exactly_equal(world, judge):
    fact = _fact(world, "city")
    prompt = f"Where does {fact.subject} live?"
    rambling = f"{fact.subject} lives in {fact.object}. One. Two. Three."  # 1 - 0.9
    rude = f"Whatever. {fact.subject} lives in {fact.object}."  # 1 - 0.6 - 0.3
    assert judge.score(prompt, rambling) == judge.score(prompt, rude)


def test_answer_sets_hold_every_style_scored_by_the_judge(judge):
    from rlhf.task.builtin import answer_sets

    rows = answer_sets("test")
    assert len(rows) == len(builtin_rows("prompts")["test"])
    for row in rows:
        assert len(row["answers"]) == len(row["gold"]) == 5
        assert row["gold"] == [judge.score(row["prompt"], a) for a in row["answers"]]
        assert row["gold"][0] == 1.0 and row["gold"][3] == -1.0  # the good and the wrong answer
    assert {r["prompt"][0]["content"] for r in answer_sets("validation")}.isdisjoint(
        r["prompt"][0]["content"] for r in rows
    )
