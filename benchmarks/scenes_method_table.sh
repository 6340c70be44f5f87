#!/usr/bin/env bash
# The scenes method table (docs/results.md) on the default transfer protocol: every label-free
# method, depth and audio students, 3 seeds, linear, k-NN and segmentation probes, in one run
# directory. Built in widening passes (finished units are reused), so that a short machine
# budget still yields the headline comparison first:
#   1. seed 0, the contrastive methods   2. seed 0, every method   3. seeds 0-2, every method
# kd reads the transfer teacher's logits over its own classes (object categories) through a KD
# head of that size; PROTOCOL=probe-labels gives the oracle-teacher ablation.
# METHODS=a,b,... replaces the method list (e.g. the methods benchmarks/search_contrastive.py
# does not cover).
#   usage: [PROTOCOL=transfer|probe-labels] [METHODS=...] benchmarks/scenes_method_table.sh [OUT]
#   results: OUT/summary.csv after each pass
set -euo pipefail
OUT=${1:-runs/scenes-table}
PROTOCOL=${PROTOCOL:-transfer}
ALL=${METHODS:-none,supervised,kd,fitnet,crd,rkd,pkt,infonce,wcord,wcord-global,wcord-local}
run() {
    python3 -m xmodal run scenes --out "$OUT" --set runtime.threads=1 --set "teacher.task=$PROTOCOL" \
        --set 'probe.probes=[linear,knn,segmentation]' --set "seeds=$1" --set "distill.methods=[$2]" \
        --set 'distill.students=[depth,audio]'
}
[ -z "${METHODS:-}" ] && run '[0]' 'none,supervised,fitnet,crd,infonce,wcord'
run '[0]' "$ALL"
run '[0,1,2]' "$ALL"
