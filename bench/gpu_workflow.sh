#!/usr/bin/env bash
# Every command of the README workflow on one device, AMP on, on data made here: the GPU
# issue's "make it run" check. Stops at the first command that fails and names it; each
# command's log is kept under OUT/logs. Run from the repository root:
#
#   bash bench/gpu_workflow.sh /tmp/gpu-workflow            # on a GPU machine: cuda, ~5 min
#   DEVICE=cpu SMALL=1 bash bench/gpu_workflow.sh /tmp/wf   # CPU smoke: tiny sizes
#
# Sizes: the pool is ImageNet-like JPEGs (bench/imagenet_like.py); SMALL=1 shrinks images,
# resolutions, epochs and iterations so a 2-core CPU finishes in minutes. bench/gpu_session.sh
# runs it with a smaller pool inside a device budget.
set -euo pipefail
OUT=${1:-/tmp/condpretrain-workflow}
DEVICE=${DEVICE:-cuda}
PY=${PYTHON:-python3}  # the interpreter that holds torch (python3 on the GPU images)
BENCH=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$OUT/logs"
# Any size below may also be set from the environment (POOL=1000 EPOCHS=1 ...).
if [ "${SMALL:-0}" = 1 ]; then
    : "${POOL:=200}" "${HI:=32}" "${LO:=16}" "${EPOCHS:=1}" "${ITERS:=4}" "${BATCH:=16}"
    : "${WORKERS:=2}" "${PRESET:=quick}" "${VOCSIZE:=64}"
else
    : "${POOL:=4000}" "${HI:=224}" "${LO:=112}" "${EPOCHS:=2}" "${ITERS:=200}" "${BATCH:=128}"
    : "${WORKERS:=12}" "${PRESET:=paper}" "${VOCSIZE:=480}"
fi
"$PY" "$BENCH/imagenet_like.py" --out "$OUT/data" --images "$POOL" --classes 20 --target 200 \
    --target-test 100 --target-classes 5 --workers "$WORKERS"
"$PY" - "$OUT/voc" "$VOCSIZE" <<'PY'
import sys
from pathlib import Path
sys.path.insert(0, "tests")
from vocgen import make_voc
if not (Path(sys.argv[1]) / "ImageSets").is_dir():
    make_voc(Path(sys.argv[1]), train=32, test=8, size=int(sys.argv[2]))
PY
POOLDIR="pool=$OUT/data/pool" TARGET="$OUT/data/target"
COMMON=(--device "$DEVICE" --workers "$WORKERS")
step() {  # step NAME COMMAND...: run it, log it, time it; a failure names the step
    local name=$1; shift
    local started=$SECONDS
    if "$@" >"$OUT/logs/$name.log" 2>&1; then
        printf '%-28s ok   %4d s\n' "$name" $((SECONDS - started))
    else
        printf '%-28s FAILED (exit %d); last lines of %s:\n' "$name" $? "$OUT/logs/$name.log"
        tail -n 15 "$OUT/logs/$name.log"
        exit 1
    fi
}
for method in $(condpretrain methods | cut -d" " -f1); do
    step "select-$method" condpretrain select --preset "$PRESET" --source "$POOLDIR" \
        --target "$TARGET" --method "$method" --fraction 0.12 --batch-size "$BATCH" \
        --cache-dir "$OUT/select-cache" "${COMMON[@]}" --out "$OUT/select/$method"
done
step "reselect-6pct" condpretrain select --scores "$OUT/select/clustering-min" --fraction 0.06 \
    --out "$OUT/select/clustering-min-6"
# The fusion the README suggests when unsure: knn on the two classic views.
for view in classic classic:layout+gradients; do
    step "select-knn-${view//[:+]/-}" condpretrain select --preset "$PRESET" --source "$POOLDIR" \
        --target "$TARGET" --method knn --features "$view" --fraction 0.12 \
        --batch-size "$BATCH" --cache-dir "$OUT/select-cache" "${COMMON[@]}" \
        --out "$OUT/select/knn-${view//[:+]/-}"
done
step "select-fuse-views" condpretrain select \
    --method fuse:knn@classic,knn@classic:layout+gradients --fraction 0.12 \
    --fuse-from "$OUT/select/knn-classic,$OUT/select/knn-classic-layout-gradients" \
    --out "$OUT/select/fuse-views"
for mode in supervised moco; do
    for res in "$HI" "$LO"; do
        step "pretrain-$mode-$res" condpretrain pretrain --preset "$PRESET" --source "$POOLDIR" \
            --subset "$OUT/select/clustering-min/subset.csv" --mode "$mode" --resolution "$res" \
            --epochs "$EPOCHS" --batch-size "$BATCH" "${COMMON[@]}" --out "$OUT/pre-$mode-$res"
    done
done
step "pretrain-moco-colour-on-device" condpretrain pretrain --preset "$PRESET" \
    --source "$POOLDIR" --subset "$OUT/select/clustering-min/subset.csv" --mode moco \
    --moco-augment-on device --resolution "$HI" --epochs "$EPOCHS" --batch-size "$BATCH" \
    "${COMMON[@]}" --out "$OUT/pre-moco-device-$HI"
step "finetune" condpretrain finetune --preset "$PRESET" --target "$TARGET" \
    --init "$OUT/pre-supervised-$LO/backbone.pt" --resolution "$HI" --epochs "$EPOCHS" \
    --batch-size "$BATCH" "${COMMON[@]}" --out "$OUT/finetune"
step "export-detectron2" condpretrain export --backbone "$OUT/pre-moco-$HI" \
    --out "$OUT/backbone.pkl"
step "detect" condpretrain detect --preset "$PRESET" --voc "$OUT/voc" \
    --init "$OUT/pre-moco-$HI/backbone.pt" --iterations "$ITERS" --lr-steps $((ITERS * 3 / 4)) \
    --precise-bn $((ITERS / 10 + 1)) "${COMMON[@]}" --out "$OUT/detect"
step "segment" condpretrain segment --preset "$PRESET" --voc "$OUT/voc" \
    --init "$OUT/pre-supervised-$HI/backbone.pt" --epochs 2 "${COMMON[@]}" --out "$OUT/segment"
# torchrun as "$PY" -m torch.distributed.run: the same interpreter, whatever PATH holds.
TORCHRUN=("$PY" -m torch.distributed.run --standalone --nproc-per-node 1)
step "torchrun-1-select" "${TORCHRUN[@]}" -m condpretrain select \
    --preset "$PRESET" --source "$POOLDIR" --target "$TARGET" --method domain-classifier \
    --fraction 0.06 "${COMMON[@]}" --out "$OUT/torchrun-select"
step "torchrun-1-pretrain" "${TORCHRUN[@]}" -m condpretrain pretrain \
    --preset "$PRESET" --source "$POOLDIR" --subset "$OUT/torchrun-select/subset.csv" \
    --resolution "$LO" --epochs "$EPOCHS" --batch-size "$BATCH" "${COMMON[@]}" \
    --out "$OUT/torchrun-pretrain"
cat >"$OUT/grid.yaml" <<YAML
name: gpu-workflow
preset: $PRESET
pool: [$POOLDIR]
targets: {synthetic: $TARGET}
methods: [random, clustering-min]
budgets: [0.06]
resolutions: [$LO]
seeds: [0]
baselines: [random-init]
select: {device: $DEVICE, workers: $WORKERS}
pretrain: {device: $DEVICE, workers: $WORKERS, epochs: $EPOCHS, batch_size: $BATCH}
finetune: {device: $DEVICE, workers: $WORKERS, epochs: $EPOCHS, batch_size: $BATCH, resolution: $HI}
YAML
step "run-grid" condpretrain run "$OUT/grid.yaml" --out "$OUT/grid"
step "report" condpretrain report "$OUT/grid"
# The grid's detection and segmentation targets: a cell each, from a subset selected for
# the VOC folder (random: a VOC folder has no class labels for the target-trained model).
cat >"$OUT/grid-voc.yaml" <<YAML
name: gpu-workflow-voc
preset: $PRESET
pool: [$POOLDIR]
targets:
  voc-det: {path: $OUT/voc, task: detect}
  voc-seg: {path: $OUT/voc, task: segment}
methods: [random]
budgets: [0.06]
resolutions: [$LO]
seeds: [0]
baselines: false
select: {device: $DEVICE, workers: $WORKERS}
pretrain: {device: $DEVICE, workers: $WORKERS, epochs: $EPOCHS, batch_size: $BATCH}
detect: {device: $DEVICE, workers: $WORKERS, iterations: $ITERS, lr_steps: [$((ITERS * 3 / 4))],
         precise_bn: $((ITERS / 10 + 1))}
segment: {device: $DEVICE, workers: $WORKERS, epochs: 2}
YAML
step "run-grid-voc" condpretrain run "$OUT/grid-voc.yaml" --out "$OUT/grid-voc"
echo "every workflow command ran on $DEVICE; logs in $OUT/logs"
