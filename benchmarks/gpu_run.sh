#!/usr/bin/env bash
# The whole GPU check in one run, from the repository root of a GPU machine that has python3 with a
# CUDA build of torch and no package registry (see benchmarks/GPU.md for the install plan):
#
#   GPU_PARTS=/tmp/parts bash benchmarks/gpu_run.sh OUT_DIR
#
# GPU_STEPS="tests bench" runs only those steps (and install, machine, summary): a re-run of what
# failed. GPU_COMPACT=1 leaves 8 result files (the device tool's limit).
#
# 1. installs onnxruntime-gpu from the parts benchmarks/gpu_wheel.py wrote (joined, sum checked) and
#    the serving wheels in .whl/ into a folder put first on PYTHONPATH;
# 2. checks that onnxruntime lists CUDA *and* that a session really runs on it;
# 3. runs tests/gpu;
# 4. cvae-sdk bench with the CUDA engines at batch 1, 16, 256, 4,096 and 65,536;
# 5. a short serving load run on the GPU; 6. a short training run with --device cuda;
# and writes every result into OUT_DIR, then prints a short table.
#
# On a machine without a GPU (the rehearsal) every CUDA step says why it is skipped and the script
# still exits 0; on a GPU machine a failed step makes it exit 1 after the others have run.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${1:-gpu-results}
PARTS=${GPU_PARTS:-.gpu}
SITE=${GPU_SITE:-/tmp/cvae-gpu-site}
PY=${PYTHON:-python3}
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
LOG="$OUT_DIR/gpu-run.log"
: >"$LOG"
failed=()
say() { echo "== $*" | tee -a "$LOG"; }
step() {  # step NAME SECONDS COMMAND...: run within SECONDS, log, remember a failure
    local name=$1 limit=$2; shift 2
    if [ -n "${GPU_STEPS:-}" ] && [[ " install machine summary $GPU_STEPS " != *" $name "* ]]; then
        say "$name: not in GPU_STEPS"; return 0
    fi
    say "$name (at most $limit s)"
    local started=$SECONDS
    if [ "$(type -t "$1")" = function ]; then "$@"; else timeout --kill-after=5 "$limit" "$@"; fi 2>&1 | tee -a "$LOG"
    local rc=${PIPESTATUS[0]}
    say "$name: exit $rc in $((SECONDS - started)) s"
    [ "$rc" -eq 0 ] || failed+=("$name")
}

install() {
    mkdir -p "$SITE"
    local tag
    tag=$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
    if [ -f "$PARTS/ort-gpu.tag" ] && [ "$(cat "$PARTS/ort-gpu.tag")" != "$tag" ]; then
        echo "the packed onnxruntime-gpu is for $(cat "$PARTS/ort-gpu.tag"), this python is $tag: nothing installed"
        return 0
    fi
    if compgen -G "$PARTS/ort-gpu.tar.xz.*" >/dev/null; then
        local sum
        sum=$(cat "$PARTS"/ort-gpu.tar.xz.* | sha256sum | cut -d' ' -f1)
        [ "$sum" = "$(cat "$PARTS/ort-gpu.sha256")" ] || { echo "parts do not join to the packed file"; return 1; }
        cat "$PARTS"/ort-gpu.tar.xz.* | xz -d | tar -x -C "$SITE" || return 1
    else
        echo "no onnxruntime-gpu parts under $PARTS: using the onnxruntime already installed"
    fi
    if compgen -G ".whl/*.whl" >/dev/null; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
            || return 1
    fi
    ln -sfn "$PWD/training" "$SITE/cvae_sdk_training"  # the training backend, as the wheel installs it
}

# what the machine had before this run's wheels shadow it (the CLI's typer, the server's stack)
"$PY" -c 'import importlib.metadata as m
for name in ("typer", "rich", "click", "onnxruntime", "fastapi", "pydantic"):
    try: print(f"before install: {name} {m.version(name)}")
    except m.PackageNotFoundError: print(f"before install: {name} absent")' 2>&1 | tee -a "$LOG"
step install 120 install
export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

step machine 60 "$PY" - "$OUT_DIR/machine.json" <<'EOF'
import json, subprocess, sys
import numpy, onnxruntime as ort
info = {"python": sys.version.split()[0], "numpy": numpy.__version__, "onnxruntime": ort.__version__,
        "onnxruntime_file": ort.__file__, "available_providers": ort.get_available_providers()}
try:
    import torch
    info.update(torch=torch.__version__, torch_cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                gpu=torch.cuda.get_device_name() if torch.cuda.is_available() else None)
except ImportError:
    info["torch"] = None
import shutil
smi = subprocess.run([shutil.which("nvidia-smi") or "true", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                      "--format=csv,noheader"], capture_output=True, text=True)
info["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip() or None
from cvae_sdk.bench import machine
info["host"] = machine()
print(json.dumps(info, indent=1))
open(sys.argv[1], "w").write(json.dumps(info, indent=1) + "\n")
EOF

# A session really on CUDA (onnxruntime-gpu lists CUDA even where it falls back to CPU)
"$PY" -c "
import sys; sys.path.insert(0, 'tests')
from gpu.conftest import cuda_unusable
reason = cuda_unusable()
print('CUDA session:', reason or 'runs on CUDAExecutionProvider')
sys.exit(0 if reason is None else 3)" 2>&1 | tee -a "$LOG"
ON_GPU=$([ "${PIPESTATUS[0]}" -eq 0 ] && echo 1 || echo 0)

step tests 210 "$PY" -m pytest tests/gpu -q -rs -p no:cacheprovider -o junit_family=xunit1 --junitxml="$OUT_DIR/gpu-tests.xml"

if [ "$ON_GPU" = 1 ]; then
    FP16=${GPU_FP16_MODEL:-$PARTS/mnist-cvae.fp16.onnx}
    engines=(torch-cuda torch-cuda-graphs torch-cuda-device torch-cuda-graphs-device sdk-cuda sdk-cuda-uint8
             sdk-cuda-device)
    fp16_args=()
    if [ -f "$FP16" ]; then engines+=(sdk-cuda-fp16); fp16_args=(--fp16-model "$FP16"); fi
    engine_args=()
    for e in "${engines[@]}"; do engine_args+=(--engine "$e"); done
    step bench 200 "$PY" -m cvae_sdk bench --threads 2 --min-seconds 0.3 "${engine_args[@]}" "${fp16_args[@]}" \
        --batch 1 --batch 16 --batch 64 --batch 256 --batch 4096 --batch 65536 --out-dir "$OUT_DIR"
    rm -f "$OUT_DIR/bench.png"  # made again from bench.json where the results land (8 files come back)
    step profile 150 "$PY" benchmarks/gpu_profile.py "$OUT_DIR/profile.json" "${fp16_args[@]/--fp16-model/--fp16}"
    exhaustive=(--engine sdk-cuda --engine sdk-cuda-device)
    [ -f "$FP16" ] && exhaustive+=(--engine sdk-cuda-fp16)
    step bench-exhaustive 120 "$PY" -m cvae_sdk bench --threads 2 --min-seconds 0.3 "${exhaustive[@]}" \
        "${fp16_args[@]}" --cuda-option cudnn_conv_algo_search=EXHAUSTIVE \
        --batch 1 --batch 64 --batch 4096 --batch 65536 --out-dir "$OUT_DIR/exhaustive"
    rm -f "$OUT_DIR/exhaustive/bench.png"
    step serve 50 "$PY" benchmarks/serve_load.py --provider CUDAExecutionProvider --seconds 2 \
        --out "$OUT_DIR/serve_load.json"
    step memory 90 "$PY" benchmarks/gpu_memory.py "$OUT_DIR/memory.json"
    step train 120 "$PY" benchmarks/gpu_train.py "$OUT_DIR/train.json"
else
    say "bench, serve, train on CUDA: skipped (no CUDA session on this machine)"
fi

step summary 30 "$PY" benchmarks/gpu_summary.py "$OUT_DIR"
if [ -n "${GPU_COMPACT:-}" ]; then  # the device tool brings back 8 files: these are inside summary.json
    rm -f "$OUT_DIR"/{machine,serve_load,train,memory}.json
fi
if [ "${#failed[@]}" -gt 0 ]; then
    say "failed: ${failed[*]}"
    [ "$ON_GPU" = 1 ] && exit 1
fi
exit 0
