#!/usr/bin/env bash
# The GPU suite: the cuda tests, slo bench of small, standard and large configs (bfloat16, compile)
# beside the nanoGPT-style loop in the same process, and a profile of large.config's steps, written
# as JSON and tables into OUT. Under 8 minutes on one GPU.
#
#   benchmarks/gpu_suite.sh OUT          on a CUDA machine
#   benchmarks/gpu_suite.sh --dry OUT    anywhere: the same steps, tiny and on the CPU (tests the plumbing)
set -euo pipefail
dry=0
if [ "${1:-}" = "--dry" ]; then dry=1; shift; fi
out=${1:?usage: benchmarks/gpu_suite.sh [--dry] OUT}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

python3 - "$out/machine.json" <<'PY'
import json, platform, sys, torch
info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu (no CUDA device)"}
json.dump(info, open(sys.argv[1], "w"), indent=1)
print("machine:", info)
PY

echo "== cuda tests"
python3 -m pytest -q -p no:cacheprovider -m cuda tests/test_cuda.py --junitxml="$out/cuda-tests.xml" \
    | tee "$out/cuda-tests.txt"

if [ "$dry" = 1 ]; then
    run=(--device=cpu --dtype=float32 --n_layer=1 --n_head=2 --n_embd=32 --block_size=32 --batch_size=2)
    bench=(--steps 2 --warmup 1 --compile off)
else
    run=(--device=cuda --dtype=bfloat16)
    bench=(--steps 20 --warmup 5 --block 5 --compile on)
fi
for config in small standard large; do
    echo "== slo bench $config"
    python3 -m slo.cli bench "configs/$config.config" "${bench[@]}" "${run[@]}" --json "$out/bench-$config.json" \
        | tee "$out/bench-$config.txt"
done

echo "== profile of large.config"
if [ "$dry" = 1 ]; then
    python3 benchmarks/gpu_report.py profile configs/large.config "$out" --dry "${run[@]}" --compile=False
else
    python3 benchmarks/gpu_report.py profile configs/large.config "$out" "${run[@]}" --compile=True
fi
echo "== summary"
python3 benchmarks/gpu_report.py summary "$out"
