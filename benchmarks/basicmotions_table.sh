#!/usr/bin/env bash
# Every method on real paired recordings: BasicMotions (UEA archive; a smart watch's 3-axis
# accelerometer and 3-axis gyroscope at 10 Hz, 4 activities, 4 participants; 40 train and 40
# test recordings of 10 s), which the aeon wheel ships. Each recording is cut into 1-s windows
# (`xmodal data from-ts --window 10`, 800 rows: 320 train, 80 val held out by recording, 400 test),
# then distilled through `paired` in both directions (accelerometer teacher -> gyroscope student,
# and back), 3 seeds, linear and k-NN probes, the paired defaults otherwise (no tuning here).
# The teacher is trained on the activity labels of the train split (the recordings have no
# other label space: the oracle protocol of docs/results.md).
#   usage: [METHODS=a,b,...] [SETS="KEY=VALUE ..."] benchmarks/basicmotions_table.sh [OUT] [TS_DIR]
#   METHODS replaces the method list; SETS adds --set overrides to both runs (the label-reading
#   ablation of docs/results.md: METHODS=none,supervised,crd,wcord
#   SETS="distill.crd.negatives=other_class distill.wcord.negatives=other_class").
#   TS_DIR: a folder with BasicMotions_TRAIN.ts and BasicMotions_TEST.ts; default: taken from
#   the aeon wheel (pip download --no-deps aeon==1.6.0, about 6 MB; nothing is installed).
#   results: OUT/table-<direction>.md and .csv
set -euo pipefail
OUT=${1:-runs/basicmotions}
TS_DIR=${2:-}
METHODS=${METHODS:-none,supervised,kd,fitnet,crd,pkt,rkd,infonce,wcord,wcord-global,wcord-local}
EXTRA=()
for item in ${SETS:-}; do EXTRA+=(--set "$item"); done
mkdir -p "$OUT"
if [ -z "$TS_DIR" ]; then
    TS_DIR=$OUT/ts
    if [ ! -f "$TS_DIR/BasicMotions_TEST.ts" ]; then
        wheel_dir=$(mktemp -d)
        python3 -m pip download --no-deps -q -d "$wheel_dir" aeon==1.6.0
        python3 -m zipfile -e "$wheel_dir"/aeon-1.6.0-*.whl "$wheel_dir/x"
        mkdir -p "$TS_DIR"
        cp "$wheel_dir"/x/aeon/datasets/data/BasicMotions/BasicMotions_{TRAIN,TEST}.ts "$TS_DIR/"
        rm -rf "$wheel_dir"
    fi
fi
if [ ! -f "$OUT/manifest/manifest.csv" ]; then
    python3 -m xmodal data from-ts "$TS_DIR/BasicMotions_TRAIN.ts" "$TS_DIR/BasicMotions_TEST.ts" \
        --to "$OUT/manifest" --column accelerometer=0-2 --column gyroscope=3-5 --window 10
fi
for pair in accelerometer:gyroscope gyroscope:accelerometer; do
    teacher=${pair%%:*} student=${pair##*:}
    python3 -m xmodal run paired --data "$OUT/manifest/manifest.csv" --out "$OUT/$teacher-to-$student" \
        --set runtime.threads=1 --set "teacher.modality=$teacher" --set "distill.students=[$student]" \
        --set "distill.methods=[$METHODS]" --set 'probe.probes=[linear,knn]' --set 'seeds=[0,1,2]' \
        "${EXTRA[@]}"
    python3 benchmarks/results_table.py "$OUT/$teacher-to-$student/results.json" \
        --students "$student" --out "$OUT/table-$teacher-to-$student.md" \
        --csv "$OUT/table-$teacher-to-$student.csv"
done
