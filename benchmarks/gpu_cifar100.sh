#!/usr/bin/env bash
# Reproduce one row of the WCoRD paper's CIFAR-100 table on a GPU: resnet32x4 -> resnet8x4,
# published top-1 WCoRD 76.15 / CRD 75.51 / KD 73.33 (student alone 72.50, teacher 79.42).
#
#   benchmarks/gpu_cifar100.sh DATA_DIR [OUT] [SEEDS] [--set KEY=VALUE ...]
#     DATA_DIR  folder holding cifar-100-python/ (downloaded there if missing and online)
#     OUT       run folder (default runs/gpu-cifar100)
#     SEEDS     student seeds (default [0,1,2])
#     --set     passed to both runs (e.g. --set distill.optim.epochs=2 for a smoke test)
#
# 1. trains the teacher once (240 epochs, CRD's recipe in configs/cifar100.yaml);
# 2. distils every student method from that one teacher, per seed (teacher.checkpoint);
# 3. prints measured vs published top-1 and writes OUT/paper_comparison.csv next to the
#    pipeline's summary.csv / results.json / classifier-top1.svg.
# Each run is resumable: rerun the same command after an interruption.
set -euo pipefail
DATA=${1:?usage: benchmarks/gpu_cifar100.sh DATA_DIR [OUT] [SEEDS]}
OUT=${2:-runs/gpu-cifar100}
SEEDS=${3:-[0,1,2]}
shift $(( $# < 3 ? $# : 3 ))
COMMON=(--data "$DATA" --set runtime.mixed_precision=bf16 "$@")

python3 -m xmodal run cifar100 "${COMMON[@]}" --out "$OUT/teacher" --set 'seeds=[0]' \
  --set 'distill.methods=[]'
python3 -m xmodal run cifar100 "${COMMON[@]}" --out "$OUT/students" --set "seeds=$SEEDS" \
  --set "teacher.checkpoint=$OUT/teacher/teacher/seed0"

python3 - "$OUT" <<'PY'
import csv, sys
out = sys.argv[1]
paper = {"teacher": 79.42, "supervised": 72.50, "kd": 73.33, "crd": 75.51, "wcord": 76.15}
rows = [r for r in csv.DictReader(open(f"{out}/students/summary.csv")) if r["metric"] == "top1"]
with open(f"{out}/paper_comparison.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["method", "top1_mean", "top1_std", "seeds", "paper", "difference"])
    print(f"{'method':12s} {'measured':>16s} {'paper':>7s} {'diff':>6s}")
    for r in rows:
        mean, std = 100 * float(r["mean"]), 100 * float(r["std"])
        ref = paper.get(r["method"])
        diff = "" if ref is None else f"{mean - ref:+.2f}"
        w.writerow([r["method"], f"{mean:.2f}", f"{std:.2f}", r["n"], ref, diff])
        print(f"{r['method']:12s} {mean:8.2f} ± {std:5.2f} {ref if ref else '':>7} {diff:>6s}")
print(f"written: {out}/paper_comparison.csv")
PY
