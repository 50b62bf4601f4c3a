"""The PPO benchmark's memory figures: the model state PPO holds, and the peak resident memory of the stage run
as its own process against a process holding one policy (see ``bench/ppo.py``)."""

from __future__ import annotations

import subprocess
import sys

POLICY_DTYPE = (
    "float32"  # ModelConfig's default: how the stage loads the policy, and the one-policy process too
)
PEAK_RSS = """
import json, sys
if sys.argv[1] == "ppo":
    import runpy
    sys.argv = ["rlhf.ppo", "--config", sys.argv[2]]
    runpy.run_module("rlhf.ppo", run_name="__main__", alter_sys=True)  # as `python -m`: pickling finds __main__
else:
    import rlhf.ppo  # the stage's imports, so both processes carry the same libraries
    if sys.argv[1] == "policy":
        import torch
        from rlhf.models import load_causal_lm, load_tokenizer
        tokenizer = load_tokenizer(sys.argv[2], padding_side="left")  # as the stage loads them
        model = load_causal_lm(sys.argv[2], dtype=sys.argv[3])
        torch.stack([p.detach().sum() for p in model.parameters()])  # resident: safetensors maps lazily
        params = list(model.parameters())
        held = {"parameters": sum(p.numel() for p in params), "dtypes": sorted({str(p.dtype) for p in params}),
                "mb": round(sum(p.numel() * p.element_size() for p in params) / 2**20, 1),
                "tokenizer": f"{type(tokenizer).__name__}, {len(tokenizer)} tokens"}
        print("HOLDS", json.dumps(held))
status = open("/proc/self/status").read()
print("VmHWM_kB", next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")))
"""


def model_state_bytes(trainer) -> dict[str, int]:
    """Bytes PPO keeps for the whole run: each distinct weight tensor once, plus gradient and two Adam moments
    per trainable weight."""
    seen: dict[int, object] = {}
    for module in (trainer.model, trainer.reward_model, trainer.ref_model):
        if module is not None:
            for p in module.parameters():
                seen.setdefault(id(p), p)
    params = list(seen.values())

    def size(ps) -> int:
        return sum(p.numel() * p.element_size() for p in ps)

    policy = trainer.model.policy
    base_policy = [p for n, p in policy.named_parameters() if "lora_" not in n]
    state = {
        "policy_parameters": size(base_policy),
        "weights": size(params),
        "gradients_and_adam": 3 * size(p for p in params if p.requires_grad),
    }
    state["total"] = state["weights"] + state["gradients_and_adam"]
    return state


def process_peaks(configs: dict, policy_dir) -> dict:
    """Peak resident memory (MB) of the stage run with each of ``configs`` as its own process, and each over that
    of a process holding one policy (``rss_ratio`` for the config named ``shared``)."""

    def peak(*args: str) -> tuple[float, str]:
        done = subprocess.run([sys.executable, "-c", PEAK_RSS, *args], capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"the {args[0]} memory run failed:\n{done.stderr[-3000:]}")
        lines = (done.stdout + done.stderr).splitlines()
        held = next(
            (line for line in lines if line.startswith(("HOLDS", "ppo: shared base", "ppo: separate"))), ""
        )
        return int(done.stdout.split("VmHWM_kB")[-1].split()[0]) / 1024, held

    imports, _ = peak("imports")
    one, held = peak("policy", str(policy_dir), POLICY_DTYPE)
    print(f"memory: imports only {imports:.0f} MB; one policy {one:.0f} MB ({held})", flush=True)
    runs = {}
    for name, config in configs.items():
        runs[name], held = peak("ppo", str(config))
        print(
            f"memory: stage, {name}: peak {runs[name]:.0f} MB = {runs[name] / one:.2f} one-policy processes ({held})"
        )
    ratios = {  # shared -> rss_ratio, shared_no_release -> rss_ratio_no_release, separate -> rss_ratio_separate
        "rss_ratio" if name == "shared" else f"rss_ratio_{name.removeprefix('shared_')}": round(mb / one, 3)
        for name, mb in runs.items()
    }
    return {
        **ratios,
        "rss_ratio_above_imports": round((runs["shared"] - imports) / (one - imports), 3),
        "ppo_stage_peak_rss_mb": {name: round(mb, 1) for name, mb in runs.items()},
        "one_policy_process_peak_rss_mb": round(one, 1),
        "imports_only_process_peak_rss_mb": round(imports, 1),
    }
