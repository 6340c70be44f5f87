#!/usr/bin/env bash
# The scenes method table (README "Method table"): every method, depth and audio students,
# 3 seeds, in one run directory. Built in widening passes (finished units are reused), so that a
# short machine budget still yields the headline comparison first:
#   1. seed 0, none/supervised/kd/crd/wcord   2. seed 0, every method   3. seeds 0-2, every method
#   usage: benchmarks/scenes_method_table.sh [OUT]      (results: OUT/summary.csv after each pass)
set -euo pipefail
OUT=${1:-runs/scenes-table}
ALL='[none,supervised,kd,fitnet,crd,rkd,pkt,wcord,wcord-global,wcord-local]'
run() { python3 -m xmodal run scenes --out "$OUT" --set runtime.threads=1 --set "seeds=$1" --set "distill.methods=$2"; }
run '[0]' '[none,supervised,kd,crd,wcord]'
run '[0]' "$ALL"
run '[0,1,2]' "$ALL"
