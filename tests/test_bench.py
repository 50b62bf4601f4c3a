"""The benchmarks' paired-round statistics, and bench/pretrain.py end to end on whatever device is present."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from _stats import paired_ratio, paired_rounds  # noqa: E402


@pytest.mark.parametrize(
    ("repo", "plain", "ratio", "iqr"),
    [
        ([10.0], [10.0], 1.0, 0.0),
        ([9.0, 10.0, 11.0], [10.0, 10.0, 10.0], 1.0, 0.1),
        # a slow round on both sides (a busy neighbour) leaves the paired ratio alone
        ([10.0, 5.0, 10.0, 10.0], [10.0, 5.0, 10.0, 10.0], 1.0, 0.0),
        ([8.0, 9.0, 4.0, 9.5], [10.0, 10.0, 5.0, 10.0], 0.85, 0.1125),
    ],
)
def test_paired_ratio_is_the_median_of_per_round_ratios(repo, plain, ratio, iqr):
    figures = paired_ratio(repo, plain)
    assert figures["ratio"] == pytest.approx(ratio, abs=1e-4)
    assert figures["ratio_iqr"] == pytest.approx(iqr, abs=1e-4)
    assert len(figures["ratio_rounds"]) == len(repo)


def test_paired_ratio_needs_matching_rounds():
    with pytest.raises(ValueError, match="equal"):
        paired_ratio([1.0, 2.0], [1.0])


def test_paired_rounds_alternate_order_and_stop_when_the_range_is_narrow():
    calls: list[str] = []

    def side(name, rates):
        def run(i):
            calls.append(f"{name}{i}")
            return rates[i]

        return run

    steady = [1.0] * 20
    repo, plain = paired_rounds(side("r", steady), side("p", steady), float, min_rounds=3, max_rounds=10)
    assert len(repo) == len(plain) == 4  # IQR 0 < 0.05 at the minimum, then on to an even count
    assert calls == ["r0", "p0", "p1", "r1", "r2", "p2", "p3", "r3"]  # each side first twice

    calls.clear()
    noisy = [1.0, 1.5, 0.7, 1.3, 0.8, 1.4, 0.6, 1.2]
    repo, plain = paired_rounds(side("r", noisy), side("p", [1.0] * 8), float, min_rounds=3, max_rounds=8)
    assert len(repo) == 8  # never narrower than 0.05: runs to the maximum


@pytest.mark.slow
def test_pretrain_bench_places_both_sides_and_the_peak_on_the_same_device(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    tiny = [
        "--hidden_size",
        "32",
        "--num_hidden_layers",
        "1",
        "--intermediate_size",
        "64",
        "--block_size",
        "32",
    ]
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench/pretrain.py"), "--steps", "2", "--warmup", "1"]
        + ["--min_rounds", "2", "--max_rounds", "2", *tiny],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    devices = [figures["device"], figures["model_device_repo"], figures["model_device_plain"]]
    assert [torch.device(d).type for d in devices] == [expected] * 3
    assert len(figures["ratio_rounds"]) == 2
    assert figures["ratio"] == pytest.approx(sum(figures["ratio_rounds"]) / 2, abs=1e-3)
    # same work on both sides: the ratio is near 1 even on a busy machine (a wrong device would be 10x off)
    assert 0.3 < figures["ratio"] < 3.0
    assert figures["peak_flops"] > 1e9 and figures["ratio_iqr"] >= 0


def load_bench(name: str):
    """A bench script as a module (``bench/<name>.py``; its directory is on sys.path for ``_finetune``)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ppo_bench_rounds_alternate_which_side_of_each_pair_goes_first():
    bench = load_bench("ppo")
    for a, b in [("shared", "plain"), ("shared", "separate"), ("separate", "plain")]:
        first = [bench.round_order(i).index(a) < bench.round_order(i).index(b) for i in range(4)]
        assert first == [True, False, True, False], (a, b)


def test_ppo_bench_speed_ratios_are_medians_of_per_round_ratios():
    bench = load_bench("ppo")

    def run(rate, tokens=100, generation_s=1.0, raw_s=1.0):
        return {
            "rate": rate,
            "tokens": tokens,
            "generation_s": generation_s,
            "raw_tokens": tokens,
            "raw_s": raw_s,
        }

    results = {  # round 2 is slow on every side (a busy neighbour): the paired ratios hold still
        "shared": [run(1.0, raw_s=0.9), run(0.5, generation_s=2.0, raw_s=1.8), run(1.1, raw_s=1.0)],
        "separate": [run(1.0), run(0.5), run(1.0)],
        "plain": [run(2.0), run(1.0), run(2.0)],
    }
    figures = bench.speed_ratios(results)
    assert figures["ratio"] == pytest.approx(0.5) and figures["ratio_rounds"] == [0.5, 0.5, 0.55]
    assert figures["shared_vs_separate"] == pytest.approx(1.0)
    assert figures["shared_vs_separate_rounds"] == [1.0, 1.0, 1.1]
    assert figures["ratio_separate_vs_plain"] == pytest.approx(0.5)
    assert figures["generation_vs_raw"] == pytest.approx(0.9) and figures["generation_vs_raw_iqr"] >= 0
    for key in ("ratio_iqr", "shared_vs_separate_iqr", "ratio_separate_vs_plain_iqr"):
        assert key in figures


@pytest.mark.slow
def test_ppo_bench_ends_with_every_figure_the_issue_asks_for(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench/ppo.py"), "--episodes", "4", "--batch_size", "4"]
        + ["--response_length", "4", "--min_rounds", "1", "--max_rounds", "1"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    for key in (
        "ratio", "ratio_iqr", "memory_ratio", "memory_ratio_separate", "rss_ratio", "rss_ratio_no_release",
        "generation_share", "generation_vs_raw", "generation_vs_raw_iqr", "shared_vs_separate",
        "shared_vs_separate_iqr",
    ):  # fmt: skip
        assert isinstance(figures[key], float), key
    # the same precision on every side, and the shared base holds less than separate models
    assert len({json.dumps(d) for d in figures["mixed_precision"].values()}) == 1
    assert figures["memory_ratio"] < figures["memory_ratio_separate"]
    assert figures["raw_same_tokens"] is True
