#!/usr/bin/env bash
# End-to-end run of the `rpsam2` command line on the real Cataract-1k frames.
#
#   benchmarks/run_cataract1k.sh            # from the repository root, venv active
#
# Reads ../shared/data/cataract1k/{train,val,test}/{images,labels} (15 frames,
# 1024×768, binary instrument masks; not part of the repository) and runs:
#   1. rpsam2 embed     – embeddings of all 15 frames into a disk cache
#   2. rpsam2 train     – a shift block on train/, validated on val/ each epoch
#   3. rpsam2 evaluate  – 10-seed single-click protocol on test/, SAM2 vs RP-SAM2
#   4. rpsam2 heatmap   – grid-sensitivity map of one test object (SAM2 and RP-SAM2)
#
# With the default random-weight tiny backbone the numbers only show that the
# pipeline runs (random SAM2 weights segment nothing useful); for real numbers
# set SAM2_WEIGHTS to a checkpoint file or Hugging Face id and BACKBONE to its size.
#
# Settings (environment variables):
#   OUT=out/cataract1k           where every output goes (out/ is git-ignored)
#   BACKBONE=sam2.1_hiera_tiny   SAM2_WEIGHTS=random   DEVICE=auto
#   EPOCHS=2   CLICKS=10 (evaluation seeds)   GRID_STRIDE= (empty: about 12×12 per object)
set -euo pipefail

DATA="../shared/data/cataract1k"
OUT="${OUT:-out/cataract1k}"
BACKBONE="${BACKBONE:-sam2.1_hiera_tiny}"
SAM2_WEIGHTS="${SAM2_WEIGHTS:-random}"
DEVICE="${DEVICE:-auto}"
EPOCHS="${EPOCHS:-2}"
CLICKS="${CLICKS:-10}"
GRID_STRIDE="${GRID_STRIDE:-}"

if [[ ! -d "$DATA" ]]; then
    echo "run_cataract1k.sh: $DATA not found (run from the repository root, with the shared data" \
         "folder beside it); nothing to do" >&2
    exit 1
fi
for split in train val test; do
    for part in images labels; do
        [[ -d "$DATA/$split/$part" ]] || { echo "run_cataract1k.sh: missing $DATA/$split/$part" >&2; exit 1; }
    done
done
if command -v rpsam2 >/dev/null 2>&1; then RPSAM2=(rpsam2); else RPSAM2=(python -m napari_rpsam2.cli); fi
mkdir -p "$OUT"
MODEL=(--backbone "$BACKBONE" --sam2-weights "$SAM2_WEIGHTS" --device "$DEVICE")
STRIDE=(); [[ -n "$GRID_STRIDE" ]] && STRIDE=(--grid-stride "$GRID_STRIDE")
step() { echo; echo "== $* ($(date +%T))"; }

step "1/4 embed"
all="$OUT/all_images"; mkdir -p "$all"
for split in train val test; do
    for f in "$DATA/$split/images"/*.png; do ln -sf "$(realpath "$f")" "$all/${split}_$(basename "$f")"; done
done
"${RPSAM2[@]}" embed --images "$all" --cache "$OUT/cache" "${MODEL[@]}"
"${RPSAM2[@]}" embed --images "$all" --cache "$OUT/cache" "${MODEL[@]}"   # second run: all found

step "2/4 train ($EPOCHS epochs)"
"${RPSAM2[@]}" train --images "$DATA/train/images" --labels "$DATA/train/labels" \
    --val-images "$DATA/val/images" --val-labels "$DATA/val/labels" \
    --epochs "$EPOCHS" --out "$OUT/shift_block.safetensors" --log "$OUT/train.jsonl" \
    --cache "$OUT/cache" "${STRIDE[@]}" "${MODEL[@]}"

step "3/4 evaluate on test ($CLICKS seeds)"
"${RPSAM2[@]}" evaluate --images "$DATA/test/images" --labels "$DATA/test/labels" \
    --shift-block "$OUT/shift_block.safetensors" --clicks "$CLICKS" --out "$OUT/report.json" \
    --cache "$OUT/cache" "${MODEL[@]}"

step "4/4 heatmap (first test frame, object 1)"
first="$(ls "$DATA/test/images" | head -n 1)"
"${RPSAM2[@]}" heatmap --image "$DATA/test/images/$first" --labels "$DATA/test/labels/$first" \
    --object 1 --shift-block "$OUT/shift_block.safetensors" --out "$OUT/heatmap.npy" \
    --cache "$OUT/cache" "${MODEL[@]}"

echo; echo "done: outputs in $OUT"
