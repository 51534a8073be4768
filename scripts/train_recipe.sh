#!/usr/bin/env bash
# The Home Depot recipe: fine-tune the bundled MiniLM-L6 cross-encoder on the real judgments,
# then plot its validation curves. Settings (docs/quality.md, "Home Depot recipe"):
#   max length 48   99% of (query, title) pairs fit in 48 tokens (median 25), so longer only costs
#   lr 8e-5         linear warmup 10% then linear decay; batch 32
#   LOSS=mse        squared error of the probability against (relevance - 1) / 2: best validation
#                   NDCG@10 and lower RMSE than BCE (LOSS=bce) on the same targets
#   PAIRWISE=0      a RankNet term on top (PAIRWISE=1) lost on every validation metric
#   1 epoch         1,661 steps over 53,127 training pairs; the checkpoint with the best
#                   validation NDCG@10 (3 evaluations) is kept, so the validation split, never
#                   the withheld queries, picks the stopping point
#   scoring head    FOLDS (2) more cross-encoders, each trained without one fold of the training
#                   queries, score the pairs they never saw; `shoprank head` fits the head on those
#                   out-of-fold logits + lexical features and installs it in OUT/head when it
#                   passes its gate (docs/features.md). HEAD=0 skips it (and the fold models).
# Its measured cost and result, and the other settings tried: docs/quality.md.
# THREADS=1 when other jobs share the cores: two threads fighting for busy cores ran 5-10x slower.
# Usage: scripts/train_recipe.sh [OUT_DIR] [DATA]   (env: EPOCHS, LR, MAX_LENGTH, BATCH, THREADS, GROUP_BY_LENGTH, PAIRWISE, LOSS, SHOPRANK,
#        COLUMNS: another file's columns, docs/data.md; default the homedepot mapping)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-artifacts/model}
DATA=${2:-../shared/data/homedepot_relevance.csv}
SHOPRANK=${SHOPRANK:-.venv/bin/shoprank}
FOLDS=${FOLDS:-2}
start=$(date +%s)
finetune() {  # finetune OUT_DIR [extra flags]: the recipe's settings, one place
    local out=$1; shift
    "$SHOPRANK" finetune --data "$DATA" --mapping "${COLUMNS:-homedepot}" --out-dir "$out" \
        --epochs "${EPOCHS:-1}" --lr "${LR:-8e-5}" --max-length "${MAX_LENGTH:-48}" \
        --batch-size "${BATCH:-32}" --warmup 0.1 --evals-per-epoch 3 --threads "${THREADS:-2}" \
        --group-by-length "${GROUP_BY_LENGTH:-0}" --pairwise-weight "${PAIRWISE:-0}" --loss "${LOSS:-mse}" "$@"
}
finetune "$OUT"
echo "cross-encoder wall time: $(( $(date +%s) - start )) s"
"$SHOPRANK" plot-training "$OUT"
if [ "${HEAD:-1}" != 0 ]; then
    for k in $(seq 0 $((FOLDS - 1))); do
        finetune "$OUT.fold${k}of${FOLDS}" --folds "$FOLDS" --holdout-fold "$k"
    done
    # Exit 2 is the gate's refusal: the recipe still delivers the cross-encoder, served alone.
    "$SHOPRANK" head --model "$OUT" --folds "$FOLDS" || [ $? -eq 2 ]
fi
echo "recipe wall time: $(( $(date +%s) - start )) s"
