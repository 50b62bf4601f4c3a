"""Real preference formats (PandaLM's votes, LLMBar / MT-Bench pairs), malformed rows, and splits by prompt.

Synthetic rows are written by the tests; small real subsets come from the shared data folder
(``$RLHF_SHARED_DATA``, ``<repo>/../shared/data`` or ``/work/shared/data``), skipped when it is absent.
"""

import json
import os
from pathlib import Path

import pytest
from helpers import COUNTRIES, cli_error, good_answer, question, save_tiny_base, write_jsonl

from rlhf import reward
from rlhf.datasets import DatasetArguments, load_dataset_for
from rlhf.preferences import MalformedRowError, convert_records, detect_format, split_by_group

ROOT = Path(__file__).resolve().parents[1]


def shared_data() -> Path:
    for candidate in (
        os.environ.get("RLHF_SHARED_DATA"),
        ROOT.parent / "shared" / "data",
        "/work/shared/data",
    ):
        if candidate and (Path(candidate) / "pandalm" / "testset-v1.json").is_file():
            return Path(candidate)
    pytest.skip("the shared data folder (../shared/data with pandalm/ and llmbar/) is not here")


def pandalm(instruction, r1, r2, votes, extra=""):
    return {
        "idx": "0", "instruction": instruction, "input": extra, "response1": r1, "response2": r2,
        **{f"annotator{i}": str(v) for i, v in enumerate(votes, start=1)},
    }  # fmt: skip


def pairwise(prompt, o1, o2, label):
    return {"input": prompt, "output_1": o1, "output_2": o2, "label": label}


# ----------------------------------------------------------------------------------------------
# converters


@pytest.mark.parametrize(
    "votes, chosen",
    [
        ((1, 1, 2), "A"),
        ((2, 2, 0), "B"),
        ((2, 2, 2), "B"),
        ((1, 0, 1), "A"),
        ((0, 0, 1), None),
        ((1, 2, 0), None),
    ],
)
def test_pandalm_majority_of_three_votes(votes, chosen):
    rows, counts = convert_records([pandalm("Say hi.", "A", "B", votes, extra="to Bob")], "pandalm", "p.json")
    if chosen is None:
        assert rows == [] and counts["ties"] + counts["no_majority"] == 1
        assert counts["ties" if votes.count(0) >= 2 else "no_majority"] == 1
    else:
        assert rows == [
            {"prompt": "Say hi.\n\nto Bob", "chosen": chosen, "rejected": "AB".replace(chosen, "")}
        ]


def test_pairwise_labels_and_format_detection():
    rows, counts = convert_records(
        [pairwise("Q1", "x", "y", 1), pairwise("Q2", "x", "y", "2"), pairwise("Q3", True, "False.", 1)],
        "pairwise",
        "m.json",
    )
    assert [(r["chosen"], r["rejected"]) for r in rows] == [("x", "y"), ("y", "x"), ("True", "False.")]
    assert counts == {"rows_read": 3, "pairs": 3, "ties": 0, "no_majority": 0, "bad_rows": 0}
    assert detect_format(pandalm("i", "a", "b", (1, 1, 1))) == "pandalm"
    assert detect_format(pairwise("q", "a", "b", 1)) == "pairwise"
    assert detect_format({"prompt": "q", "chosen": "a", "rejected": "b"}) is None


@pytest.mark.parametrize(
    "bad, field, expected",
    [
        ({"output_2": None}, "output_2", "missing"),
        ({"label": 3}, "label", "must be one of [1, 2]"),
        ({"label": "first"}, "label", "must be one of [1, 2]"),
        ({"output_1": "   "}, "output_1", "is empty"),
        ({"input": ["not", "text"]}, "input", "must be text"),
    ],
)
def test_a_malformed_pairwise_row_names_file_row_and_field(bad, field, expected):
    records = [pairwise("Q0", "a", "b", 1), {**pairwise("Q1", "a", "b", 2), **bad}]
    with pytest.raises(MalformedRowError) as err:
        convert_records(records, "pairwise", "data/m.json")
    message = str(err.value)
    assert message.startswith("data/m.json: row 1: field") and f"'{field}'" in message and expected in message
    assert "\n" not in message
    rows, counts = convert_records(records, "pairwise", "data/m.json", on_bad_row="drop")
    assert len(rows) == 1 and counts["bad_rows"] == 1


def test_a_malformed_row_stops_the_reward_stage_with_one_line(tmp_path, capsys):
    save_tiny_base(tmp_path / "base")
    records = [pandalm(question(c), good_answer(c), "No idea.", (1, 1, 1)) for c in COUNTRIES]
    records[5]["annotator2"] = "7"
    data = tmp_path / "votes.json"
    data.write_text(json.dumps(records))
    argv = [
        "--model_name_or_path", str(tmp_path / "base"), "--dataset_name", str(data),
        "--output_dir", str(tmp_path / "run"), "--report_to", "none", "--max_steps", "1",
    ]  # fmt: skip
    err = cli_error(reward.cli, argv, capsys)
    assert f"{data}: row 5: field 'annotator2' must be one of [0, 1, 2], got '7'" in err
    assert not (tmp_path / "run" / "config.yaml").exists()  # nothing started
    records[5]["annotator2"] = "1"
    records[7].pop("response2")
    data.write_text(json.dumps(records))
    assert "row 7: field 'response2' is missing" in cli_error(reward.cli, argv, capsys)


def test_an_empty_answer_in_trl_preference_data_is_named(tmp_path):
    rows = [{"prompt": f"q{i}", "chosen": f"a{i}", "rejected": f"b{i}"} for i in range(6)]
    rows[4]["rejected"] = ""
    path = write_jsonl(tmp_path / "pairs.jsonl", rows)
    with pytest.raises(MalformedRowError, match=r"pairs.jsonl \(split 'train'\): row 4: field 'rejected'"):
        load_dataset_for("preference", str(path), splits=("train",))


# ----------------------------------------------------------------------------------------------
# splits


def texts(dataset):
    """Prompts and answers of a split, read straight from its rows (independently of the library's grouping)."""
    prompts = {" ".join(m["content"] for m in row["prompt"]) for row in dataset}
    answers = {row[side][-1]["content"] for row in dataset for side in ("chosen", "rejected")}
    return prompts, answers


def assert_disjoint(data):
    seen_prompts, seen_answers = set(), set()
    for split in data.values():
        prompts, answers = texts(split)
        assert not prompts & seen_prompts and not answers & seen_answers
        seen_prompts |= prompts
        seen_answers |= answers


def synthetic_pairs(n_prompts=30, per_prompt=3):
    """Several pairs per prompt; a few answers reused under two prompts, and one generic answer everywhere."""
    rows = []
    for p in range(n_prompts):
        for k in range(per_prompt):
            rejected = "I cannot help with that." if k == 0 else f"bad {p}-{k}"
            chosen = f"shared answer {p // 2}" if k == 1 else f"good {p}-{k}"
            rows.append(pairwise(f"prompt {p}", chosen, rejected, 1))
    return rows


def test_a_split_shares_no_prompt_and_no_answer_and_is_seeded(tmp_path):
    path = tmp_path / "pairs.json"
    path.write_text(json.dumps(synthetic_pairs()))
    args = DatasetArguments(dataset_name=str(path), holdout_fraction=0.2, validation_fraction=0.2)
    args.load("preference", seed=123)  # the training seed does not move the split
    data = args.data_report["data"]
    assert set(data) == {"train", "validation", "test"}
    assert_disjoint(data)
    # the first held-out split gets its full share, ceil(0.2 * 90) rows; validation may lose the rows whose
    # answer is already in test (a "shared answer" reused under two prompts)
    assert len(data["test"]) >= 18 and len(data["validation"]) >= 12
    # the generic answer stays in the first held-out split only; its other rows are dropped and counted
    generic = [name for name, split in data.items() if "I cannot help with that." in texts(split)[1]]
    assert generic == ["test"] and args.data_report["dropped_shared_answer"] > 0
    assert sum(len(s) for s in data.values()) + args.data_report["dropped_shared_answer"] == 90

    again = DatasetArguments(dataset_name=str(path), holdout_fraction=0.2, validation_fraction=0.2)
    again.load("preference", seed=0)
    assert again.data_report["data"]["test"]["prompt"] == data["test"]["prompt"]
    other = DatasetArguments(
        dataset_name=str(path), holdout_fraction=0.2, validation_fraction=0.2, split_seed=1
    )
    other.load("preference", seed=0)
    assert texts(other.data_report["data"]["test"])[0] != texts(data["test"])[0]
    # adding a validation split leaves the test split as it was
    no_val = DatasetArguments(dataset_name=str(path), holdout_fraction=0.2)
    assert no_val.load("preference", seed=0)["test"]["prompt"] == data["test"]["prompt"]


def test_the_split_is_written_and_reads_back_for_every_kind(tmp_path):
    path = tmp_path / "pairs.json"
    path.write_text(json.dumps(synthetic_pairs()))
    args = DatasetArguments(dataset_name=str(path), holdout_fraction=0.2, validation_fraction=0.2)
    args.load("preference", seed=0)
    manifest = json.loads(args.save_split(tmp_path / "run").read_text())
    assert manifest["shared_across_splits"] == {"prompts": 0, "answers": 0}
    assert {k: v["rows"] for k, v in manifest["files"].items()} == args.data_report["rows"]
    reread = load_dataset_for(
        "preference", str(tmp_path / "run" / "split"), splits=("train", "validation", "test")
    )
    for name in ("train", "validation", "test"):
        assert reread[name]["chosen"] == args.data_report["data"][name]["chosen"]
    # the RL stage's prompts and the SFT stage's demonstrations come from the same training prompts
    prompts = DatasetArguments(dataset_name=str(path), holdout_fraction=0.2, validation_fraction=0.2)
    sft = DatasetArguments(dataset_name=str(path), holdout_fraction=0.2, validation_fraction=0.2)
    assert prompts.load("prompts", seed=0)["train"]["prompt"] == reread["train"]["prompt"]
    demos = sft.load("sft", seed=0)["train"]
    assert demos["completion"] == reread["train"]["chosen"] and "rejected" not in demos.column_names


def test_split_by_group_keeps_a_prompt_together_even_past_its_share():
    rows = [{"prompt": "big", "chosen": f"a{i}", "rejected": f"b{i}"} for i in range(8)]
    rows += [{"prompt": f"p{i}", "chosen": f"c{i}", "rejected": f"d{i}"} for i in range(8)]
    parts, dropped = split_by_group(rows, {"test": 0.25}, seed=0)
    assert dropped == 0 and sorted(parts["test"] + parts["train"]) == list(range(16))
    big = {i for i in range(8)}
    assert big <= set(parts["test"]) or big <= set(parts["train"])


def test_real_pandalm_and_mt_bench_pool_into_disjoint_splits():
    root = shared_data()
    args = DatasetArguments(
        dataset_name=str(root / "pandalm" / "testset-v1.json"),
        dataset_mixture=[str(root / "llmbar" / "Processed-MT-Bench.json")],
        holdout_fraction=0.2,
        validation_fraction=0.15,
        bad_rows="drop",
    )
    data = args.load("preference", seed=0)
    full = args.data_report["data"]
    assert_disjoint(full)
    metrics = args.data_metrics()
    assert metrics["data_rows_read"] == 999 + 200
    assert metrics["data_ties"] > 0 and metrics["data_bad_rows"] > 0  # PandaLM's tie votes and empty answers
    total = sum(len(s) for s in full.values()) + metrics["data_dropped_shared_answer"]
    assert total == 999 + 200 - metrics["data_ties"] - metrics["data_no_majority"] - metrics["data_bad_rows"]
    assert 0.17 < len(data["test"]) / total < 0.3 and 0.12 < len(full["validation"]) / total < 0.25
    with pytest.raises(MalformedRowError, match=r"testset-v1.json: row \d+: field 'response\d' is empty"):
        DatasetArguments(dataset_name=str(root / "pandalm" / "testset-v1.json")).load("preference", seed=0)
