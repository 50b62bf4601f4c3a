"""Template selection: per side and category, with priorities and fallbacks; never the flagged text."""

import pytest

from rlhf.moderation.base import make_result
from rlhf.templates import DEFAULT_TEMPLATES, FALLBACK, SELF_HARM_SUPPORT, TemplateError, Templates

CUSTOM = {
    "default": "Global fallback.",
    "input": {"default": "Input default.", "hate": "No hate ({category}).", "privacy": "No doxxing."},
    "output": {"default": "Output default.", "privacy": "Answer withheld: {category}."},
}


@pytest.mark.parametrize(
    "side, categories, expected",
    [
        ("input", ["hate"], "No hate (Hate)."),
        ("input", ["privacy"], "No doxxing."),
        ("input", ["elections"], "Input default."),  # no category template: the side's default
        ("input", [], "Input default."),
        ("output", ["privacy"], "Answer withheld: Privacy."),
        ("output", ["hate"], "Output default."),  # hate has a template on the input side only
        ("input", ["hate", "privacy"], "No hate (Hate)."),  # first flagged category with a template
        ("input", ["elections", "privacy"], "No doxxing."),
        ("input", ["hate", "self_harm"], SELF_HARM_SUPPORT),  # self-harm has priority over order
        ("output", ["privacy", "self_harm"], SELF_HARM_SUPPORT),
    ],
)
def test_select_custom_over_builtin(side, categories, expected):
    templates = Templates.from_config(CUSTOM)
    assert templates.select(side, categories) == expected


def test_global_default_when_a_side_has_none():
    templates = Templates.from_config({"default": "Nothing to see."}, builtin=False)
    assert templates.select("input", ["hate"]) == "Nothing to see."
    assert templates.select("output", []) == "Nothing to see."
    assert Templates.from_config(None, builtin=False).select("output", ["x"]) == FALLBACK


def test_builtin_templates_cover_every_builtin_category_on_input():
    templates = Templates.from_config()
    for category in (
        "violent_crimes",
        "nonviolent_crimes",
        "indiscriminate_weapons",
        "hate",
        "self_harm",
        "privacy",
    ):
        text = templates.select("input", [category])
        assert text == DEFAULT_TEMPLATES["input"][category]
    assert templates.select("output", ["self_harm"]) == SELF_HARM_SUPPORT
    assert templates.select("output", ["hate"]) == DEFAULT_TEMPLATES["output"]["default"]


def test_for_result_uses_side_and_flagged_categories():
    result = make_result(
        categories={"hate": False, "privacy": True},
        scores={"hate": 0.1, "privacy": 0.9},
        thresholds=None,
        reason="x",
        backend="classifier",
        latency_s=0.0,
        side="output",
    )
    assert Templates.from_config(CUSTOM).for_result(result) == "Answer withheld: Privacy."


def test_priority_is_configurable():
    templates = Templates.from_config({**CUSTOM, "priority": ["privacy"]})
    assert templates.select("input", ["self_harm", "privacy"]) == "No doxxing."


@pytest.mark.parametrize(
    "config, message",
    [
        ({"inptu": {}}, "unknown key"),
        ({"input": {"hate": ""}}, "input.hate must be a non-empty string"),
        ({"input": {"hate": 3}}, "input.hate must be a non-empty string"),
        ({"output": {"default": "You asked: {text}"}}, r"placeholder \{text\}"),  # would echo the text
        ({"default": "{0}"}, r"placeholder \{0\}"),
        ({"input": ["a"]}, "'input' must be a mapping"),
        ({"priority": [1]}, "priority"),
    ],
)
def test_bad_config_names_the_key(config, message):
    with pytest.raises(TemplateError, match=message):
        Templates.from_config(config)


def test_side_must_be_known():
    with pytest.raises(ValueError, match="side"):
        Templates.from_config().select("middle", [])
