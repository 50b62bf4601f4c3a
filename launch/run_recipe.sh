#!/usr/bin/env bash
# bash launch/run_recipe.sh [ACCELERATE_CONFIG] [RECIPE_DIR] [-- extra args for every training stage]
# Runs a recipe stage by stage, each training stage under `accelerate launch` with ACCELERATE_CONFIG
# (default launch/cpu_ddp.yaml; launch/multi_gpu.yaml, fsdp.yaml, zero2.yaml, zero3.yaml on GPUs) from
# RECIPE_DIR (default configs/quickstart). Paths come from the recipe's YAML files (runs/quickstart/... for
# the built-in one). A stage whose output directory already holds a finished run is skipped, so after a
# failure the same command carries on where it stopped. Run from the repository root, e.g.
#   bash launch/run_recipe.sh launch/multi_gpu.yaml configs/quickstart -- --report_to tensorboard
set -euo pipefail

launch_config="${1:-launch/cpu_ddp.yaml}"
recipe="${2:-configs/quickstart}"
shift $(( $# > 2 ? 2 : $# ))
[[ "${1:-}" == "--" ]] && shift
extra=("$@")

python="${PYTHON:-python}"
for path in "${launch_config}" "${recipe}"; do
  [[ -e "${path}" ]] || { echo "run_recipe.sh: ${path} does not exist" >&2; exit 2; }
done

finished() {  # finished STAGE: true when the stage's output_dir (from its YAML) holds a finished run
  "${python}" - "${recipe}/$1.yaml" <<'PY'
import sys, yaml
from rlhf.runs import is_complete
output_dir = (yaml.safe_load(open(sys.argv[1])) or {}).get("output_dir")
sys.exit(0 if output_dir and is_complete(output_dir) else 1)
PY
}

run() {  # run STAGE MODULE [--single]: the stage under accelerate launch (or one process), unless finished
  local stage="$1" module="$2" command args=()
  if [[ "${3:-}" == --single ]]; then
    command=("${python}")
  else
    command=(accelerate launch --config_file "${launch_config}")
    args=("${extra[@]}")
  fi
  if [[ ! -f "${recipe}/${stage}.yaml" ]]; then
    echo "[run_recipe] ${stage}: no ${recipe}/${stage}.yaml, skipping"
  elif finished "${stage}"; then
    echo "[run_recipe] ${stage}: finished run found, skipping"
  else
    echo "[run_recipe] ${stage}: ${command[*]} -m ${module} --config ${recipe}/${stage}.yaml ${args[*]}"
    "${command[@]}" -m "${module}" --config "${recipe}/${stage}.yaml" "${args[@]}"
  fi
}

run tokenizer rlhf.tokenizer --single   # BPE training is not data parallel
run pretrain rlhf.pretrain
run sft rlhf.sft
run reward rlhf.reward
run ppo rlhf.ppo
run moderation-train rlhf.moderation.train
echo "[run_recipe] done; chat with the result: rlhf chat --config ${recipe}/pipeline.yaml"
