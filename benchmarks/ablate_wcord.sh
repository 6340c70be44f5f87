#!/usr/bin/env bash
# Small WCoRD ablation on the embedded scenes dataset: seed 0, depth student, one change at a
# time against the shipped config (configs/scenes.yaml). Each variant is its own run directory
# under OUT; results land in OUT/<variant>/summary.csv (linear-probe accuracy). The variant
# "spectral" is the shipped config (also the seed-0 depth wcord row of the method table).
#   usage: benchmarks/ablate_wcord.sh [OUT] [VARIANT...]   (default: all variants)
set -euo pipefail
OUT=${1:-runs/ablate-wcord}; shift || true
declare -A VARIANTS=(
  [spectral]=""                                   # the default: Lipschitz critic on the unit ball
  [lipschitz-none]="distill.wcord.lipschitz=none" # InfoNCE ablation: unconstrained heads, sphere
  [momentum-0.5]="distill.wcord.momentum=0.5"     # CRD's bank momentum
  [lambda-local-0.5]="distill.wcord.lambda_local=0.5"
  [tau-0.2]="distill.wcord.tau=0.2"
  [epochs-40]="distill.optim.epochs=40"
  [beta-1]="distill.wcord.beta=1.0"              # + Hinton KD on the teacher's logits (label-free)
)
NAMES=("$@"); [ ${#NAMES[@]} -eq 0 ] && NAMES=(spectral lipschitz-none momentum-0.5 lambda-local-0.5 tau-0.2 epochs-40 beta-1)
for name in "${NAMES[@]}"; do
  extra=()
  [ -n "${VARIANTS[$name]}" ] && extra=(--set "${VARIANTS[$name]}")
  python3 -m xmodal run scenes --out "$OUT/$name" --set 'seeds=[0]' --set 'distill.students=[depth]' \
    --set 'distill.methods=[wcord]' --set runtime.threads=1 "${extra[@]}"
  echo "== $name: $(grep -h 'depth,wcord,linear,accuracy' "$OUT/$name/summary.csv" || true)"
done
