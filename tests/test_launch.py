"""Every accelerate config in launch/ is one accelerate itself accepts."""

from pathlib import Path

import pytest
from accelerate.commands.config.config_args import load_config_from_file

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_CONFIGS = sorted((ROOT / "launch").glob("*.yaml"))
EXPECTED = {
    "cpu_ddp.yaml": ("MULTI_CPU", 2),
    "single_gpu.yaml": ("NO", 1),
    "multi_gpu.yaml": ("MULTI_GPU", 8),
    "fsdp.yaml": ("FSDP", 8),
    "zero2.yaml": ("DEEPSPEED", 8),
    "zero3.yaml": ("DEEPSPEED", 8),
}


def test_all_expected_launch_configs_exist():
    assert set(EXPECTED) <= {p.name for p in LAUNCH_CONFIGS}


@pytest.mark.parametrize("path", LAUNCH_CONFIGS, ids=[p.name for p in LAUNCH_CONFIGS])
def test_accelerate_parses_launch_config(path):
    config = load_config_from_file(str(path))
    distributed_type, num_processes = EXPECTED[path.name]
    assert config.distributed_type.value == distributed_type
    assert config.num_processes == num_processes
    assert path.read_text().startswith("# accelerate launch --config_file launch/" + path.name)
    if distributed_type == "DEEPSPEED":
        assert config.deepspeed_config["zero_stage"] == int(path.stem[-1])
