#!/usr/bin/env bash
# One-shot protocol (PerSAM, P2SAM, Med-PerSAM) on the real annotated frames, one folder = one stack.
# usage: benchmarks/run_oneshot_real.sh DATA_DIR [OUT_DIR] [extra rpsam2 options]
# DATA_DIR holds cataract1k/{train,val,test} and more/{cadis_binary,catinstseg_binary}/test (see the data's
# SOURCES.txt); research-only frames: read them where they are, never copy them into the repository.
set -euo pipefail
data=${1:?data folder}; out=${2:-out/oneshot_real}; shift $(( $# >= 2 ? 2 : 1 ))
mkdir -p "$out"
for d in cataract1k/test cataract1k/train cataract1k/val more/cadis_binary/test more/catinstseg_binary/test; do
  name=$(echo "$d" | tr '/' '_')
  python -m napari_rpsam2.cli oneshot-eval --images "$data/$d/images" --labels "$data/$d/labels" \
    --sam2-weights random --device cpu --reference 0 --quiet --out "$out/$name.json" "$@"
done
