#!/bin/bash
# The CUDA measurement of issue 18, prepared for a session that is lent a GPU (none was in the
# session that wrote it: no number in docs/performance.md comes from this script yet).
#
#   tools/gpu_benchmark.sh [OUT_DIR [RUN ...]]   # OUT_DIR: $OUT or ./gpu-benchmark; RUN: defaults bf16 bf16-compile
#
# One RUN per call where a command's time is limited (e.g. 10 minutes a command): each run is
# capped at 540 s. Without RUN names all three run in turn.
#
# Paper-sized RGB + audio (configs/kinetics_sounds/rgb_audio.yaml, C = 10), decisions drawn at
# rgb 0.3 / audio 0.8, 32 generated 10 s clips, batches of 16, 8 loading workers; adaptive and all
# interleaved round by round in each run. Runs: the defaults (channels-last), then + bf16 autocast,
# then + torch.compile. Each writes <name>.json (the --json document) and <name>.err (per-pass
# lines, kept when a run is cut short); summary.txt has one line per run: videos/s of both
# methods, the speed-up and the GFLOPs ratio. Target (issue 18): adaptive >= 0.8 x the GFLOPs
# ratio over all. Expect ~2-4 minutes per run on one H100/H200 class GPU with 16 cores.
set -u
out="${1:-${OUT:-gpu-benchmark}}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/gpu.txt" 2>&1 || true
common=(configs/kinetics_sounds/rgb_audio.yaml --device cuda --selection rgb=0.3,audio=0.8
        --videos 32 --batch-size 16 --workers 8 --warmup-videos 16 --repeats 3 --json)
run() {
    local name=$1; shift
    echo "== $name $(date -u +%H:%M:%S)" | tee -a "$out/summary.txt"
    timeout 540 adamml benchmark run "${common[@]}" "$@" > "$out/$name.json" 2> "$out/$name.err"
    python - "$out/$name.json" >> "$out/summary.txt" 2>&1 <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
m = {x["method"]: x for x in d["methods"]}
s = d["speedup"]
print(f"  adaptive {m['adaptive']['videos_per_second']:.2f} v/s, all {m['all']['videos_per_second']:.2f} v/s, "
      f"speed-up {s['videos_per_second']:.2f}x, GFLOPs ratio {s['gflops_ratio']:.2f}x, "
      f"share of the ratio {s['videos_per_second'] / s['gflops_ratio']:.2f}")
PY
}
declare -A flags=([defaults]="" [bf16]="--autocast bf16" [bf16-compile]="--autocast bf16 --compile")
names=("${@:2}")
[ ${#names[@]} -eq 0 ] && names=(defaults bf16 bf16-compile)
for name in "${names[@]}"; do
    # shellcheck disable=SC2086  # the flags split into words on purpose
    run "$name" ${flags[$name]}
done
cat "$out/summary.txt"
