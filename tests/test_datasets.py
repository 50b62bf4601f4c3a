"""Loading stage datasets: file types, column mapping, HH-RLHF conversion, and errors raised before training."""

import json

import pytest
from datasets import Dataset
from helpers import toy_preference_rows, toy_prompt_rows, toy_sft_rows, write_jsonl, write_toy_splits

from rlhf.dataset_formats import hh_rlhf_to_preference, hh_rlhf_to_prompt, is_hh_rlhf_text, parse_hh_dialogue
from rlhf.datasets import DatasetArguments, DatasetFormatError, load_dataset_for, parse_column_mapping

USER = "user"
BOT = "assistant"


def msg(role, content):
    return {"role": role, "content": content}


# ----------------------------------------------------------------------------------------------
# HH-RLHF


@pytest.mark.parametrize(
    "text, expected",
    [
        ("\n\nHuman: Hi\n\nAssistant: Hello!", [msg(USER, "Hi"), msg(BOT, "Hello!")]),
        (
            "\n\nHuman: What is 2+2?\n\nAssistant: 4.\n\nHuman: And 3+3?\n\nAssistant: 6.",
            [msg(USER, "What is 2+2?"), msg(BOT, "4."), msg(USER, "And 3+3?"), msg(BOT, "6.")],
        ),
        ("\n\nHuman: Line one\nline two\n\nAssistant:", [msg(USER, "Line one\nline two"), msg(BOT, "")]),
        (" \n\nHuman: Hi\n\nAssistant:  spaced ", [msg(USER, "Hi"), msg(BOT, "spaced")]),
    ],
)
def test_parse_hh_dialogue(text, expected):
    assert parse_hh_dialogue(text) == expected


def test_parse_hh_dialogue_rejects_other_text():
    with pytest.raises(DatasetFormatError, match="HH-RLHF"):
        parse_hh_dialogue("Hello there\n\nAssistant: hi")
    assert is_hh_rlhf_text("\n\nHuman: a\n\nAssistant: b")
    assert not is_hh_rlhf_text("Human: a Assistant: b") and not is_hh_rlhf_text([msg(USER, "a")])


def test_hh_rlhf_pair_becomes_shared_prompt_plus_the_two_answers():
    row = {
        "chosen": "\n\nHuman: Hi\n\nAssistant: Hello.\n\nHuman: Capital of France?\n\nAssistant: Paris.",
        "rejected": "\n\nHuman: Hi\n\nAssistant: Hello.\n\nHuman: Capital of France?\n\nAssistant: Go away.",
    }
    assert hh_rlhf_to_preference(row) == {
        "prompt": [msg(USER, "Hi"), msg(BOT, "Hello."), msg(USER, "Capital of France?")],
        "chosen": [msg(BOT, "Paris.")],
        "rejected": [msg(BOT, "Go away.")],
    }
    assert hh_rlhf_to_prompt(row)["prompt"][-1] == msg(USER, "Capital of France?")


def test_hh_rlhf_pair_that_diverges_earlier_keeps_the_shared_turns_only():
    row = {
        "chosen": "\n\nHuman: Q\n\nAssistant: A1\n\nHuman: more\n\nAssistant: B1",
        "rejected": "\n\nHuman: Q\n\nAssistant: A2",
    }
    out = hh_rlhf_to_preference(row)
    assert out["prompt"] == [msg(USER, "Q")]
    assert out["chosen"] == [msg(BOT, "A1"), msg(USER, "more"), msg(BOT, "B1")]
    assert out["rejected"] == [msg(BOT, "A2")]


def test_identical_hh_dialogues_compare_their_last_answers():
    row = {"chosen": "\n\nHuman: Q\n\nAssistant: A", "rejected": "\n\nHuman: Q\n\nAssistant: A"}
    assert hh_rlhf_to_preference(row) == {
        "prompt": [msg(USER, "Q")],
        "chosen": [msg(BOT, "A")],
        "rejected": [msg(BOT, "A")],
    }


def test_raw_hh_rlhf_jsonl_loads_as_preference_and_as_prompts(tmp_path):
    rows = [
        {
            "chosen": f"\n\nHuman: q{i}\n\nAssistant: good {i}",
            "rejected": f"\n\nHuman: q{i}\n\nAssistant: bad {i}",
        }
        for i in range(10)
    ] + [{"chosen": "not a dialogue", "rejected": "neither"}]  # dropped, with a warning
    path = write_jsonl(tmp_path / "hh.jsonl", rows)
    data = load_dataset_for("preference", str(path), holdout_fraction=0.2)
    assert len(data["train"]) + len(data["test"]) == 10
    assert set(data["train"].column_names) == {"prompt", "chosen", "rejected"}
    first = data["train"][0]
    assert first["prompt"][0]["role"] == USER and first["chosen"][0]["content"].startswith("good")
    prompts = load_dataset_for("prompts", str(path), splits=("train",))
    assert prompts["train"].column_names == ["prompt"] and len(prompts["train"]) == 10


# ----------------------------------------------------------------------------------------------
# files and formats


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".parquet"])
def test_local_files_by_extension(tmp_path, suffix):
    rows = toy_sft_rows()
    path = tmp_path / f"sft{suffix}"
    if suffix == ".jsonl":
        write_jsonl(path, rows)
    elif suffix == ".json":
        path.write_text(json.dumps(rows))
    else:
        Dataset.from_list(rows).to_parquet(str(path))
    data = load_dataset_for("sft", str(path), holdout_fraction=0.25, seed=0)
    assert (len(data["train"]), len(data["test"])) == (9, 3)
    assert data["train"][0]["completion"][0]["role"] == BOT


def test_csv_with_plain_text_and_a_column_mapping(tmp_path):
    path = tmp_path / "qa.csv"
    path.write_text("question,answer,extra\nWhat is 1+1?,Two.,x\nWhat is 2+2?,Four.,y\nHi?,Hello.,z\n")
    data = load_dataset_for(
        "sft", str(path), splits=("train",), column_mapping={"question": "prompt", "answer": "completion"}
    )
    row = data["train"][0]
    assert set(data["train"].column_names) == {"prompt", "completion"}  # extra columns dropped
    assert row == {"prompt": [msg(USER, "What is 1+1?")], "completion": [msg(BOT, "Two.")]}


def test_a_folder_of_split_files_keeps_its_splits(tmp_path):
    folder = write_toy_splits(tmp_path / "pref", toy_preference_rows(), n_test=5)
    data = load_dataset_for("preference", str(folder))
    assert (len(data["train"]), len(data["test"])) == (7, 5)


def test_implicit_prompt_preference_rows_are_split(tmp_path):
    rows = [
        {"chosen": r["prompt"] + r["chosen"], "rejected": r["prompt"] + r["rejected"]}
        for r in toy_preference_rows()
    ]
    data = load_dataset_for("preference", str(write_jsonl(tmp_path / "p.jsonl", rows)), splits=("train",))
    row = data["train"][0]
    assert row["prompt"] == toy_preference_rows()[0]["prompt"]
    assert row["chosen"] == toy_preference_rows()[0]["chosen"]


def test_prompts_from_sft_data_and_from_whole_chats(tmp_path):
    sft = load_dataset_for(
        "prompts", str(write_jsonl(tmp_path / "s.jsonl", toy_sft_rows())), splits=("train",)
    )
    assert sft["train"][0] == toy_prompt_rows()[0]
    chats = [{"messages": r["prompt"] + r["completion"]} for r in toy_sft_rows()]
    from_chats = load_dataset_for("prompts", str(write_jsonl(tmp_path / "c.jsonl", chats)), splits=("train",))
    assert from_chats["train"][0] == toy_prompt_rows()[0]


# ----------------------------------------------------------------------------------------------
# errors that stop a stage before training


def test_missing_column_names_the_file_the_column_and_the_columns_present(tmp_path):
    rows = [{"prompt": r["prompt"], "answer": r["completion"]} for r in toy_sft_rows()]
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DatasetFormatError) as err:
        load_dataset_for("sft", str(path))
    message = str(err.value)
    assert str(path) in message and "'completion'" in message and "['prompt', 'answer']" in message
    assert "dataset_column_mapping" in message


def test_mapping_a_column_that_does_not_exist_is_an_error(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", toy_sft_rows())
    with pytest.raises(DatasetFormatError, match="'question', which is not there"):
        load_dataset_for("sft", str(path), column_mapping={"question": "prompt"})


def test_wrong_cell_type_unknown_file_type_and_missing_split(tmp_path):
    path = write_jsonl(tmp_path / "n.jsonl", [{"prompt": 3, "completion": 4}] * 4)
    with pytest.raises(DatasetFormatError, match="column 'prompt' must hold chat messages"):
        load_dataset_for("sft", str(path), splits=("train",))
    (tmp_path / "data.txt").write_text("hello")
    with pytest.raises(DatasetFormatError, match="unsupported file type"):
        load_dataset_for("sft", str(tmp_path / "data.txt"))
    with pytest.raises(DatasetFormatError, match="no split 'validation'"):
        load_dataset_for(
            "sft", str(write_jsonl(tmp_path / "s.jsonl", toy_sft_rows())), splits=("validation",)
        )
    with pytest.raises(DatasetFormatError, match="no such file"):
        load_dataset_for("sft", str(tmp_path / "missing.jsonl"))


def test_dataset_arguments_load_and_cap_the_training_rows(tmp_path):
    folder = write_toy_splits(tmp_path / "sft", toy_sft_rows())
    args = DatasetArguments(dataset_name=str(folder), max_train_samples=3, dataset_column_mapping=None)
    data = args.load("sft", seed=0)
    assert (len(data["train"]), len(data["test"])) == (3, 4)
    assert args.task_seed == 0  # the built-in world does not follow the training seed
    assert parse_column_mapping('{"q": "prompt"}') == {"q": "prompt"}
    with pytest.raises(DatasetFormatError, match="must be a mapping"):
        parse_column_mapping("q=prompt")


def test_builtin_task_kinds_have_the_trl_columns():
    pytest.importorskip("rlhf.task")
    for kind, columns in {
        "sft": {"prompt", "completion"},
        "preference": {"prompt", "chosen", "rejected", "margin"},
    }.items():
        data = load_dataset_for(kind, "builtin")
        assert set(data["train"].column_names) == columns and len(data["test"]) > 0
    assert load_dataset_for("prompts", "builtin")["test"].column_names == ["prompt"]


def test_a_preference_margin_column_reaches_the_reward_trainer(tmp_path):
    rows = [{**row, "margin": 0.1 * i} for i, row in enumerate(toy_preference_rows())]
    folder = write_toy_splits(tmp_path / "pref", rows, n_test=5)
    data = load_dataset_for("preference", str(folder))
    assert set(data["train"].column_names) == {"prompt", "chosen", "rejected", "margin"}
    assert data["train"]["margin"] == pytest.approx([0.1 * i for i in range(len(rows) - 5)])
    sft = load_dataset_for("sft", str(write_toy_splits(tmp_path / "sft", toy_sft_rows(), n_test=2)))
    assert "margin" not in sft["train"].column_names
