#!/usr/bin/env bash
# Converged multi-seed comparison (issue: converged results), resumable: run it again after any
# interruption and it continues where it stopped (finished tuning trials and (model, seed) runs are
# kept; the running comparison run continues from its -last.pth).
#
#   benchmarks/converged.sh DATASET JOB
#     DATASET  baby | baby-cold          (atoms converted from ../shared/data/baby on first use)
#     JOB      baselines   BPR and LightGCN, each tuned on validation over its own grid
#                          (properties/hyper/<Model>.hyper) on its native sampler (RecBole's), then x 3 seeds,
#                          model by model (BPR's rows finish first); the seed-123 run at the tuned point is the
#                          search's best trial itself, taken over, not trained twice (tools/trial_run.py);
#                          MODELS=EASE adds RecBole's EASE (closed form, its 8-point lambda grid)
#              multimodal  MICRO (sampled contrastive mode) and LATTICE x 3 seeds, seed by seed
#              full        MICRO in full contrastive mode, seed 123 (row MICRO-full on the page)
#              lambda      MICRO with lambda_coeff 1.0 (original graphs only, no learned graph), seed 123
#                          (row MICRO-lambda1): what the learned graph contributes
#              mmbaselines VBPR, FREEDOM, BM3 and LGMRec (issue 23), each tuned on validation over its authors'
#                          grid (properties/hyper/<Model>.hyper, exhaustive), then x 3 seeds at the chosen point;
#                          the cheap models first. LGMRec runs at its authors' Baby point (LGMRec.yaml); with
#                          LGMREC_DRAWS=N it is tuned by N seeded random draws of its 192-point grid first
#              untrained   (baby-cold) MICRO, LATTICE and VBPR scoring items without a training interaction by
#                          the rule UNTRAINED_RULE (default zero: their ID embeddings read as zeros; content: from
#                          the content part of their score, untrained_item_ids in the model yamls), rows
#                          <Model>-<rule> x 3 seeds; VBPR, FREEDOM and BM3 at their tuned points (TUNED_ON),
#                          MICRO and LATTICE as in the multimodal job, LGMRec at its authors' point
#              publish     copy what has finished so far (JSON, per-user files, tuning exports) into
#                          results/ and re-render results/DATASET.md and .png from it
#              restore     the reverse, on a fresh machine: seed $WORK from what results/ holds (files
#                          already under $WORK are kept), so the jobs keep every published run and
#                          continue from there (runs whose checkpoints are gone restart from epoch 0)
#
# MODELS="FREEDOM BM3" limits the baselines / mmbaselines / untrained job to those of its models (two jobs side by side
# on different models use both cores).
# SHARD=K/N splits each search of the job across N jobs (run_hyper.py --shard; exhaustive grids and LGMRec's random
# draws): this job trains the K-th of every N points into $WORK/tuning/<Model>-DATASET-shardKofN.json and stops there
# (no seed runs); start the N jobs side by side, then run the job again without SHARD: the whole search takes the
# shards' trials over (--reuse), trains whatever no shard finished, and the seed runs follow.
# TUNED_ON=baby (for DATASET baby-cold): take the tuned points of the Baby searches ($WORK/tuning/<Model>-baby.json,
# which must exist) instead of searching again; the page notes that they were selected on another dataset.
#
# The jobs may run side by side (each appends to the same results JSON). Everything they write
# (atoms, checkpoints, the JSON and pages) is under $WORK (default ../runs), outside the repository;
# the publish job copies the results into results/.
set -euo pipefail
USAGE="usage: benchmarks/converged.sh baby|baby-cold baselines|multimodal|full|lambda|mmbaselines|untrained|publish|restore"
DATASET=${1:?$USAGE}
JOB=${2:?$USAGE}
case $JOB in  # checked before anything is written
  baselines|multimodal|full|lambda|mmbaselines|untrained|publish|restore) ;;
  *) echo "error: unknown job '$JOB' (baselines | multimodal | full | lambda | mmbaselines | untrained | publish | restore)" >&2; exit 2 ;;
esac
WORK=$(realpath -m "${WORK:-../runs}")
SHARED=${SHARED:-../shared/data/baby}
PY=${PY:-.venv/bin/python}
SEEDS=${SEEDS:-"123 2020 7"}
TUNED_ON=${TUNED_ON:-$DATASET}
RULE=${UNTRAINED_RULE:-zero}
SHARD=${SHARD:-}
if [ -n "$SHARD" ] && ! { [[ $SHARD =~ ^([0-9]+)/([0-9]+)$ ]] && (( 1 <= BASH_REMATCH[1] && BASH_REMATCH[1] <= BASH_REMATCH[2] )); }; then
  echo "error: SHARD is '$SHARD'; use K/N with 1 <= K <= N (job K of N splitting each search, e.g. 1/2)" >&2
  exit 2
fi
if [ -n "$SHARD" ] && { [ "$TUNED_ON" != "$DATASET" ] || ! [[ $JOB =~ ^(baselines|mmbaselines|untrained)$ ]]; }; then
  echo "error: SHARD splits the searches of the baselines, mmbaselines and untrained jobs on this dataset" \
    "(JOB=$JOB, TUNED_ON=$TUNED_ON)" >&2
  exit 2
fi
case $RULE in
  zero|content) ;;
  *) echo "error: UNTRAINED_RULE is '$RULE'; use zero or content (untrained_item_ids other than keep)" >&2; exit 2 ;;
esac
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}   # two jobs side by side on 2 cores
ATOMS=$WORK/atoms
OUT=$WORK/compare
TUNING=$WORK/tuning
mkdir -p "$ATOMS" "$OUT" "$TUNING" "$WORK/saved"
COMMON=(--data_path="$ATOMS" --checkpoint_dir="$WORK/saved")

convert() {  # the dataset's atoms, once: jobs started side by side wait on the lock for the first one
  exec 9>"$WORK/convert.lock"
  flock 9
  if [ ! -d "$ATOMS/$DATASET" ]; then
    case $DATASET in
      baby) "$PY" -m recbole_micro.data lattice "$SHARED" --name baby --out "$ATOMS" ;;
      baby-cold) "$PY" -m recbole_micro.data lattice "$SHARED" --name baby-cold --cold-start 0.2 --seed 123 --out "$ATOMS" ;;
      *) echo "error: unknown dataset '$DATASET' (baby | baby-cold)" >&2; exit 2 ;;
    esac
  fi
  flock -u 9
}
[ "$JOB" = publish ] || [ "$JOB" = restore ] || convert

compare() {  # compare SEED MODELS [overrides...]
  local seed=$1 models=$2; shift 2
  "$PY" run_compare.py --dataset "$DATASET" --models "$models" --seeds "$seed" --out "$OUT" --resume \
    "${COMMON[@]}" "$@"
}

tune() {  # tune MODEL [search options...]: the model's search on validation (skipped with TUNED_ON=another)
  local model=$1; shift
  if [ "$TUNED_ON" = "$DATASET" ]; then
    local stem=$TUNING/$model-$DATASET
    local shards=() reuse=() own=$stem-shard${SHARD/\//of}
    for export in "$stem"-shard*of*.json; do
      [ ! -f "$export" ] || [ "$export" = "$own.json" ] || shards+=("$export")
    done
    if [ -n "$SHARD" ]; then  # this job's part of the search only, taking over what the other shards finished
      [ ${#shards[@]} = 0 ] || reuse=(--reuse "$(IFS=,; echo "${shards[*]}")")
      "$PY" run_hyper.py --model "$model" --dataset "$DATASET" "$@" --shard "$SHARD" \
        --output_file "$own" --resume "${reuse[@]}" "${COMMON[@]}"
      return
    fi
    [ ${#shards[@]} = 0 ] || reuse=(--reuse "$(IFS=,; echo "${shards[*]}")")
    "$PY" run_hyper.py --model "$model" --dataset "$DATASET" "$@" \
      --output_file "$stem" --resume "${reuse[@]}" "${COMMON[@]}"
  elif [ ! -f "$TUNING/$model-$TUNED_ON.json" ]; then
    echo "error: TUNED_ON=$TUNED_ON but $TUNING/$model-$TUNED_ON.json does not exist: run that search first" >&2
    exit 2
  fi
}

case $JOB in
  baselines)
    for model in ${MODELS:-BPR LightGCN}; do
      tune "$model"
      [ -z "$SHARD" ] || continue  # a shard job tunes only
      for seed in $SEEDS; do compare "$seed" "$model" --tuned "$TUNING/$model-$TUNED_ON.json"; done
    done ;;
  multimodal)
    for seed in $SEEDS; do compare "$seed" MICRO,LATTICE --contrastive_mode=sampled; done ;;
  full)
    compare 123 MICRO --name MICRO-full --contrastive_mode=full ;;
  lambda)
    compare 123 MICRO --name MICRO-lambda1 --contrastive_mode=sampled --lambda_coeff=1.0 ;;
  mmbaselines)
    for model in ${MODELS:-VBPR FREEDOM BM3 LGMRec}; do
      if [ "$model" = LGMRec ] && [ "${LGMREC_DRAWS:-0}" = 0 ]; then
        # the authors' own Baby point (their search; LGMRec.yaml's defaults): a random search of its 192-point
        # grid costs ~2 CPU hours per draw here (56 s per Baby epoch); LGMREC_DRAWS=16 runs one (on a GPU)
        [ -n "$SHARD" ] || for seed in $SEEDS; do compare "$seed" "$model"; done
        continue
      fi
      search=(); [ "$model" != LGMRec ] || search=(--algo random --max_evals "$LGMREC_DRAWS")
      tune "$model" "${search[@]}"
      [ -z "$SHARD" ] || continue  # a shard job tunes only
      for seed in $SEEDS; do compare "$seed" "$model" --tuned "$TUNING/$model-$TUNED_ON.json"; done
    done ;;
  untrained)
    for model in ${MODELS:-VBPR MICRO LATTICE}; do
      case $model in
        MICRO|LATTICE) extra=(--contrastive_mode=sampled) ;;
        LGMRec) extra=() ;;
        *) tune "$model"; extra=(--tuned "$TUNING/$model-$TUNED_ON.json") ;;
      esac
      [ -z "$SHARD" ] || continue  # a shard job tunes only
      for seed in $SEEDS; do
        compare "$seed" "$model" --name "$model-$RULE" --untrained_item_ids="$RULE" "${extra[@]}"
      done
    done ;;
  publish)
    [ -f "$OUT/$DATASET.json" ] || { echo "error: $OUT/$DATASET.json does not exist yet: run a job first" >&2; exit 2; }
    mkdir -p results/tuning
    cp "$OUT/$DATASET.json" "results/$DATASET.json"
    rm -rf "results/$DATASET-per-user"
    [ ! -d "$OUT/$DATASET-per-user" ] || cp -r "$OUT/$DATASET-per-user" "results/$DATASET-per-user"
    # the shards of an unfinished split search too, so a fresh machine's restore keeps their trials
    for export in "$TUNING"/*-"$DATASET".{json,txt} "$TUNING"/*-"$DATASET"-shard*of*.{json,txt}; do
      [ ! -f "$export" ] || cp "$export" results/tuning/
    done
    "$PY" run_compare.py --dataset "$DATASET" --from-json ;;
  restore)
    [ -f "results/$DATASET.json" ] || { echo "error: results/$DATASET.json does not exist: nothing to restore" >&2; exit 2; }
    if grep -q '"recbole-micro comparison 1"' "results/$DATASET.json"; then  # the 20-epoch pages
      echo "results/$DATASET.json holds the earlier 20-epoch runs (format 1): not restored, the jobs start afresh"
    else cp -n "results/$DATASET.json" "$OUT/$DATASET.json"; fi
    [ ! -d "results/$DATASET-per-user" ] || { mkdir -p "$OUT/$DATASET-per-user"
      cp -n "results/$DATASET-per-user"/* "$OUT/$DATASET-per-user/"; }
    for export in results/tuning/*-"$DATASET".{json,txt} results/tuning/*-"$DATASET"-shard*of*.{json,txt}; do
      [ ! -f "$export" ] || cp -n "$export" "$TUNING/"
    done
    echo "restored results/$DATASET* into $WORK (existing files kept)" ;;
esac
