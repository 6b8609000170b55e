#!/usr/bin/env bash
# The GPU checks, as one script a session lent a GPU runs as it is (issue 20):
#
#   scripts/gpu_check.sh --device cuda --out DIR    # on the GPU machine, in under 8 minutes
#   scripts/gpu_check.sh --device cpu --out DIR     # the same steps, scaled down, on this machine
#
# Steps, each writing its log under DIR (figures.txt collects the lines that matter):
#   1 train       one run of the default model on the device (dev/test loss, steps/s)
#   2 bf16        the same run with trainer.precision=bf16-mixed
#   3 sweep       a 2-worker beat_2p2 sweep on the device (trials, best dev, wall)
#   4 pack_step   scripts/bench_pack_step.py: a fused step of G trials against G solo steps,
#                 the MLP's own fused form and the generic stack of any network side by side
#   5 pack_sweep  scripts/bench_pack.py: trials per hour of a whole beat_2p2 sweep with its
#                 shape fixed (trials of one shape form one cohort), pack=1 against packs
#                 1, 8, 32, 128 on cuda (64 trials: the largest pack holds them all)
#
# What it needs there: Python with torch (the GPU machine's python3 has torch, Lightning and
# matplotlib) and this project's other dependencies. Where they are missing, carry the wheels
# that `scripts/gpu_wheels.sh` downloads into .whl/ (git-ignored) and name `.whl` and
# `data/names.txt` in the device tool's `carry`; they are installed under /tmp/site here.
set -euo pipefail

device=cuda
out=
while [[ $# -gt 0 ]]; do
  case "$1" in
    --device) device="$2"; shift 2 ;;
    --device=*) device="${1#*=}"; shift ;;
    --out) out="$2"; shift 2 ;;
    --out=*) out="${1#*=}"; shift ;;
    *) echo "error: unknown argument $1; usage: scripts/gpu_check.sh [--device cuda|cpu] --out DIR" >&2; exit 2 ;;
  esac
done
if [[ -z "$out" ]]; then
  echo "error: --out DIR is missing; usage: scripts/gpu_check.sh [--device cuda|cpu] --out DIR" >&2
  exit 2
fi
if [[ "$device" != cuda && "$device" != cpu ]]; then
  echo "error: --device $device is not cuda or cpu" >&2
  exit 2
fi

repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
figures="$out/figures.txt"
: >"$figures"
# Runs and the sweep live in a scratch folder: DIR keeps the figures, the logs and the JSON
# (the device tool brings back 8 files at most).
work="$(mktemp -d)"

python="${PYTHON:-}"
if [[ -z "$python" ]]; then
  if [[ -x .venv/bin/python ]]; then python="$repo/.venv/bin/python"; else python=python3; fi
fi
# The carried wheels, only where this Python lacks the project's dependencies (the GPU machine).
if ! "$python" -c "import hydra, optuna, wandb, submitit" 2>/dev/null; then
  if ! compgen -G ".whl/*.whl" >/dev/null; then
    echo "error: $python lacks hydra, optuna, wandb or submitit and .whl/ holds no wheels; run scripts/gpu_wheels.sh here and carry .whl" >&2
    exit 2
  fi
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$repo/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export WANDB_MODE=offline WANDB_SILENT=true

names=
for candidate in data/names.txt ../shared/data/names.txt; do
  if [[ -f "$candidate" ]]; then names="$(cd "$(dirname "$candidate")" && pwd)/names.txt"; break; fi
done
if [[ -z "$names" ]]; then
  echo "error: names.txt not found at data/names.txt or ../shared/data/names.txt; carry data/names.txt" >&2
  exit 2
fi

if [[ "$device" == cuda ]]; then
  accelerator=gpu; steps=4000; trials=8; sweep_steps=2000; packs=1,8,32,128; threads=4
  pack_trials=64; pack_steps=1000; sweep_packs=1,8,32,128
else
  accelerator=cpu; steps=500; trials=4; sweep_steps=300; packs=1,4,8; threads=1
  pack_trials=4; pack_steps=300; sweep_packs=1,8
fi
train=("$python" -m makemore_sweep.cli.train "data.path=$names" "trainer.accelerator=$accelerator")

say() { echo "$*" | tee -a "$figures"; }
step_figures() {  # the run's figures from its metrics.json
  "$python" - "$1" "$2" <<'EOF'
import json, sys
m = json.load(open(f"{sys.argv[2]}/metrics.json"))
def loss(key): return "n/a" if m.get(key) is None else f"{m[key]:.4f}"
rate = m["steps"] / m["train_time_s"] if m.get("train_time_s") else float("nan")
print(f"{sys.argv[1]}: dev {loss('val_loss')} test {loss('test_loss')} steps {m['steps']} "
      f"train {m['train_time_s']:.1f} s ({rate:.0f} steps/s) device {m['device']}")
EOF
}

# Each step runs even when an earlier one failed: a device lease is too short to rerun them.
failed=0
step() {  # step NAME LOG COMMAND...: run it, or say which step failed and where its log is
  local name="$1" log="$2" status=0
  shift 2
  "$@" >"$log" 2>&1 || status=$?
  if [[ $status -ne 0 ]]; then
    say "step $name FAILED (exit status $status; see $log)"
    return 1
  fi
}

say "gpu_check --device $device on $(hostname), $(date -u +%FT%TZ)"
"$python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')" | tee -a "$figures"

# 1 train on the device
if step train "$out/train.log" "${train[@]}" "trainer.max_steps=$steps" logger=csv \
  "hydra.run.dir=$work/train"; then
  step_figures train "$work/train" | tee -a "$figures"
else
  failed=1
fi

# 2 bf16-mixed
if step bf16 "$out/bf16.log" "${train[@]}" "trainer.max_steps=$steps" \
  trainer.precision=bf16-mixed logger=csv "hydra.run.dir=$work/bf16"; then
  step_figures bf16-mixed "$work/bf16" | tee -a "$figures"
else
  failed=1
fi

# 3 a 2-worker sweep on the device
mkdir -p "$work/sweep/studies"
start=$(date +%s)
if (cd "$work/sweep" && step sweep "$out/sweep.log" "${train[@]}" sweep=beat_2p2 \
  "hydra.sweeper.n_trials=$trials" hydra.sweeper.workers=2 "trainer.max_steps=$sweep_steps" \
  trainer.val_every_n_steps=100 hydra.sweeper.study_name=gpu_check \
  "hydra.sweeper.storage=sqlite:///$work/sweep/studies/gpu_check.db" \
  "hydra.sweeper.export_dir=$work/sweep/experiments"); then
  say "sweep: $trials trials, 2 workers, $sweep_steps steps each, $(( $(date +%s) - start )) s wall; $(grep -m1 'best trial' "$out/sweep.log" || echo 'no best trial line')"
else
  failed=1
fi

# 4 the packed step against solo steps
if step pack_step "$out/pack_step.txt" "$python" scripts/bench_pack_step.py --device "$device" \
  --packs "$packs" --threads "$threads" --forms fused,generic --out "$out/pack_step.json"; then
  tee -a "$figures" <"$out/pack_step.txt"
else
  failed=1
fi

# 5 a whole sweep, packed against pack=1 (the text only: DIR brings back 8 files at most)
if step pack_sweep "$out/pack_sweep.txt" "$python" scripts/bench_pack.py --sweep beat_2p2 \
  --fixed-shape --device "$device" --packs "$sweep_packs" --n-trials "$pack_trials" \
  --steps "$pack_steps" --names "$names"; then
  grep -E '^(pack=|goal)' "$out/pack_sweep.txt" | tee -a "$figures"
else
  failed=1
fi

if [[ $failed -ne 0 ]]; then
  say "gpu_check ended with failed steps: figures in $out"
  exit 1
fi
say "gpu_check done: figures in $out"
