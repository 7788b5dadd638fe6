#!/usr/bin/env bash
# Distill-stage seconds of the sample quick build (cold cache): one process with 2 or 1 torch
# threads, --threads auto, and torchrun's 2 single-thread processes; idle and beside one
# busy-loop process. Prints one line per run (wall, distill, float accuracy).
#
#   bash scripts/benchmarks/bench_processes.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

run() {  # label, busy loops, command...
    local label=$1 busy=$2; shift 2
    local pids=()
    for ((i = 0; i < busy; i++)); do python3 -c "while True: pass" & pids+=($!); done
    sleep 1
    local start end
    start=$(date +%s.%N)
    "$@" --quick --no-progress --out "$scratch/out-$label" --cache-dir "$scratch/cache-$label" \
        > "$scratch/$label.log" 2>&1 || true  # exit 1: the quick student misses the budgets
    end=$(date +%s.%N)
    for p in "${pids[@]}"; do kill "$p"; done
    echo "$label busy=$busy wall=$(python3 -c "print(round($end - $start, 1))")" \
        "$(awk '$1 == "distill" {print "distill=" $2}' "$scratch/$label.log")" \
        "$(grep -oE 'float accuracy [0-9.]+%' "$scratch/$label.log" || true)"
}

for busy in 0 1; do
    run "one2t-busy$busy" "$busy" .venv/bin/python -m edgepack build --threads 2
    run "one1t-busy$busy" "$busy" .venv/bin/python -m edgepack build --threads 1
    run "auto-busy$busy" "$busy" .venv/bin/python -m edgepack build --threads auto
    run "ddp2x1-busy$busy" "$busy" .venv/bin/torchrun --nproc-per-node 2 -m edgepack build --threads 1
done
