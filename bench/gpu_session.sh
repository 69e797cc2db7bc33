#!/usr/bin/env bash
# The GPU issue's device checks as ONE prepared call that fits a session's device budget
# (15 minutes in all, machine start included; one command at most 10 minutes). From the
# repository root on the device machine:
#
#   bash bench/gpu_session.sh "$OUT" 530        # OUT: the folder whose files come back
#   STAGES=compile bash bench/gpu_session.sh "$OUT" 150   # next, on the still-warm machine
#   DEVICE=cpu SMALL=1 bash bench/gpu_session.sh /tmp/session 1500   # CPU smoke of the script
#
# Stages (STAGES, default env,micro,bench,workflow,compile), in the order of what the issue needs
# most; a stage with a share must end by start + (its share + the shares before it) x
# BUDGET, so time one stage leaves goes to the next:
#   env       the device, the library versions, nvJPEG and faiss on the GPU (seconds)
#   micro     bench/photometric.py and bench/resize_crop.py on the device, bench/augment.py
#             on the host's CPU (one worker's view costs)                             (5 %)
#   bench     bench/gpu.py: every throughput figure (MoCo with its colour steps in the
#             workers and on the device), printed row by row as measured, so a stage cut
#             off by its limit still leaves what it got                              (50 %)
#   workflow  bench/gpu_workflow.sh on a smaller pool: every README command on CUDA (45 %)
#   compile   bench/gpu.py --compile on pre-training (supervised, MoCo with the colour steps
#             on the device: the GPU-bound ones), on bench's pool, against bench's figures:
#             the data for the --compile default                          (what is left)
# A stage that fails or runs out of time is reported and the next one still runs.
# Returned in OUT (at most 8 files come back): session.log (everything printed here),
# micro.log, bench.log, compile.log, workflow.log, workflow-logs.tar.gz (each workflow
# step's log).
# The work itself goes to WORK (default /tmp/condpretrain-session), outside OUT.
#
# Packages the device image lacks travel as wheels in .whl/ (carry it): faiss-cpu. How to
# fetch them here is in README.md, "Taking the GPU figures".
set -uo pipefail
OUT=${1:?usage: gpu_session.sh OUT [BUDGET_SECONDS]}
BUDGET=${2:-530}
STAGES=",${STAGES:-env,micro,bench,workflow,compile},"
WORK=${WORK:-/tmp/condpretrain-session}
DEVICE=${DEVICE:-cuda}
PY=${PYTHON:-python3}
REPO=$(cd "$(dirname "$0")/.." && pwd)
START=$SECONDS
mkdir -p "$OUT" "$WORK"
exec > >(tee -a "$OUT/session.log") 2>&1
export PYTHONUNBUFFERED=1 CONDPRETRAIN_NO_BROWSER=1

# -- the package from this checkout, and carried wheels, without pip reaching any index -----
if compgen -G "$REPO/.whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$WORK/site" "$REPO"/.whl/*.whl || echo "wheels: install FAILED"
    export PYTHONPATH="$WORK/site"
fi
export PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$WORK/bin"
printf '#!/bin/sh\nexec %s -m condpretrain "$@"\n' "$PY" >"$WORK/bin/condpretrain"
chmod +x "$WORK/bin/condpretrain"
export PATH="$WORK/bin:$PATH"

deadline=0
stage() {  # stage NAME SHARE LOG COMMAND...: run it until its deadline; report how it ended
    local name=$1 share=$2 log=$3; shift 3
    [[ $STAGES == *",$name,"* ]] || return 0
    deadline=$(( deadline + BUDGET * share / 100 ))
    local limit=$(( START + deadline - SECONDS ))
    [ "$name" = compile ] && limit=$(( START + BUDGET - SECONDS ))  # the rest, whatever it is
    if [ "$limit" -lt 20 ]; then
        echo "== $name: skipped, ${limit} s left of the budget"
        return
    fi
    echo "== $name: up to ${limit} s"
    local began=$SECONDS
    timeout -k 15 "$limit" "$@" 2>&1 | tee "$OUT/$log"
    local status=${PIPESTATUS[0]}
    case $status in
        0) echo "== $name: ok in $(( SECONDS - began )) s" ;;
        124|137) echo "== $name: STOPPED at its limit (${limit} s); figures above are partial" ;;
        *) echo "== $name: FAILED (exit $status) after $(( SECONDS - began )) s" ;;
    esac
}

env_stage() {
echo "== env"
nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"
echo "cores $(nproc); $(free -g | awk '/Mem/ {print $2 " GiB memory"}'); /dev/shm $(df -h /dev/shm | awk 'NR == 2 {print $2}') (the loaders' workers pass batches through it)"
"$PY" - "$DEVICE" <<'PY' || echo "env: FAILED"
import sys

import faiss
import numpy
import PIL
import torch
import torchvision

print(f"python {sys.version.split()[0]}; torch {torch.__version__}; torchvision "
      f"{torchvision.__version__}; numpy {numpy.__version__}; Pillow {PIL.__version__}; "
      f"faiss {faiss.__version__} (GPU: {hasattr(faiss, 'StandardGpuResources')})")
if sys.argv[1].startswith("cuda"):
    import io

    from torchvision.io import decode_jpeg
    print(f"cuda: {torch.cuda.get_device_name()}; bf16: {torch.cuda.is_bf16_supported()}")
    buffer = io.BytesIO()
    PIL.Image.new("RGB", (64, 48), (200, 10, 10)).save(buffer, "JPEG")
    data = torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8)
    print("nvJPEG batched decode:", [tuple(x.shape) for x in decode_jpeg([data, data],
                                                                           device="cuda")])
PY
}
[[ $STAGES == *",env,"* ]] && env_stage

if [ "${SMALL:-0}" = 1 ]; then  # the CPU smoke: toy sizes (bench/gpu.py's docstring)
    BENCH_SIZES=(--pool-images 96 --target-images 40 --resolutions 32,16 --supervised-arch
                 resnet10 --moco-arch resnet10 --score-arch resnet10 --batch-size 16 --epochs 2
                 --iterations 6 --score-resolution 32 --workers 2 --finetune-resolution 32
                 --downstream-preset quick --voc-images 16 --voc-size 64)
    COMPILE_SIZES=(--resolutions 16 --supervised-arch resnet10 --moco-arch resnet10
                   --batch-size 16 --pool-images 96 --target-images 40 --epochs 2 --workers 2)
    PHOTOMETRIC_SIZES=(--views 16 --resolution 32)
    RESIZE_SIZES=(--batch-size 16 --size 32)
    AUGMENT_SIZES=(--views 10 --resolutions 32)
else  # sized so that each stage fits its share of ~530 s on one H100
    BENCH_SIZES=(--pool-images 10000 --epochs 3 --iterations 100 --workers 14)
    COMPILE_SIZES=(--resolutions 224,112 --pool-images 10000 --epochs 3 --workers 14
                   --modes supervised,moco-device)
    PHOTOMETRIC_SIZES=(--views 512 --resolution 224)  # a MoCo step's views: 2 x batch 256
    RESIZE_SIZES=(--batch-size 256)
    AUGMENT_SIZES=(--workers 14 --views 40)  # its table prints at the end: keep it short
fi
# The small benches (the device's colour steps and resize, a worker's views) as one command
# line for `timeout`, each run whatever the one before did.
MICRO="$PY $REPO/bench/photometric.py --device $DEVICE ${PHOTOMETRIC_SIZES[*]};
       $PY $REPO/bench/resize_crop.py --device $DEVICE ${RESIZE_SIZES[*]};
       $PY $REPO/bench/augment.py ${AUGMENT_SIZES[*]}"
stage micro 5 micro.log bash -c "$MICRO"
stage bench 50 bench.log "$PY" "$REPO/bench/gpu.py" --device "$DEVICE" --out "$WORK/bench" \
    "${BENCH_SIZES[@]}"
if [ "${SMALL:-0}" = 1 ]; then
    stage workflow 45 workflow.log env DEVICE="$DEVICE" SMALL=1 \
        bash "$REPO/bench/gpu_workflow.sh" "$WORK/workflow"
else
    stage workflow 45 workflow.log env DEVICE="$DEVICE" POOL=1500 EPOCHS=1 ITERS=40 \
        BATCH=128 WORKERS=14 bash "$REPO/bench/gpu_workflow.sh" "$WORK/workflow"
fi
[ -d "$WORK/workflow/logs" ] && tar -czf "$OUT/workflow-logs.tar.gz" -C "$WORK/workflow" logs
# The same pool (--data) and the same sizes as bench, compiled: pre-training only.
stage compile 0 compile.log "$PY" "$REPO/bench/gpu.py" --device "$DEVICE" --compile \
    --only pretrain --out "$WORK/compile" --data "$WORK/bench/data" "${COMPILE_SIZES[@]}"
echo "== session: $(( SECONDS - START )) s of a ${BUDGET} s budget; logs in $OUT"
