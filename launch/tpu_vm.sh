#!/usr/bin/env bash
# Run a hydra_jax sweep on a Cloud TPU VM (single host or a multi-host slice) with gcloud.
#
#   launch/tpu_vm.sh --name hydra --zone us-central2-b --accelerator-type v4-32 \
#       --config configs/chinchilla7b.py --workdir /tmp/hydra_7b --results ./results_7b \
#       -- --config.mesh.model=8 --config.sweep.chunk_size=64
#
# Steps: (1) reuse the TPU VM if `describe` finds it, else create it; (2) copy this
# repository (its tracked files) to every worker and install it with jax[tpu];
# (3) run `python3 -m hydra_jax.main` on all workers at once (each host joins the
# global mesh through jax.distributed, which hydra_jax initialises on multi-host VMs);
# (4) copy the workdir back from worker 0, the host that writes the results.
# Run the same command again after a preemption: the job resumes from its saved chunks.
# With --bucket gs://BUCKET the workdir defaults to gs://BUCKET/hydra_jax/NAME, which
# survives a preempted (Spot) VM's lost disk, and step 4 copies it from the bucket.
#
# --dry-run prints every gcloud command instead of running it. Anything after `--` is
# passed to hydra_jax.main (config overrides).
set -euo pipefail

NAME="hydra-jax"
ZONE="us-central2-b"
PROJECT=""
ACCELERATOR="v4-8"
VERSION="tpu-ubuntu2204-base"
CONFIG="configs/tiny.py"
WORKDIR=""
BUCKET=""
RESULTS="./results"
MANUAL_DIR=""
SPOT=0
DELETE=0
DRY_RUN=0
EXTRA_ARGS=()

usage() {
  sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
  cat <<EOF
Options (defaults in brackets):
  --name NAME               TPU VM name [$NAME]
  --zone ZONE               [$ZONE]
  --project PROJECT         gcloud project [gcloud's default]
  --accelerator-type TYPE   e.g. v4-8, v4-32, v5litepod-16 [$ACCELERATOR]
  --version VERSION         TPU VM software version [$VERSION]
  --config FILE             job config, relative to the repository [$CONFIG]
  --workdir DIR             results folder on the VM or a bucket URL
                            [gs://BUCKET/hydra_jax/NAME with --bucket, else /tmp/hydra_jax_run]
  --bucket gs://BUCKET      keep the workdir in this Cloud Storage bucket (preemption-safe)
  --results DIR             local folder that receives the results [$RESULTS]
  --manual-dir DIR          local folder with known_1000.json / counterfact.json to copy over
  --spot                    create a Spot VM (cheaper, may be preempted: rerun to resume)
  --delete                  delete the VM when done
  --dry-run                 print the gcloud commands, run nothing
EOF
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --name) NAME="$2"; shift 2 ;;
    --zone) ZONE="$2"; shift 2 ;;
    --project) PROJECT="$2"; shift 2 ;;
    --accelerator-type) ACCELERATOR="$2"; shift 2 ;;
    --version) VERSION="$2"; shift 2 ;;
    --config) CONFIG="$2"; shift 2 ;;
    --workdir) WORKDIR="$2"; shift 2 ;;
    --bucket) BUCKET="${2%/}"; shift 2 ;;
    --results) RESULTS="$2"; shift 2 ;;
    --manual-dir) MANUAL_DIR="$2"; shift 2 ;;
    --spot) SPOT=1; shift ;;
    --delete) DELETE=1; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; EXTRA_ARGS=("$@"); break ;;
    *) echo "tpu_vm.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -n "$BUCKET" && "$BUCKET" != gs://* ]]; then
  echo "tpu_vm.sh: --bucket must be a gs:// URL, not $BUCKET" >&2
  exit 2
fi
if [[ -z "$WORKDIR" ]]; then
  if [[ -n "$BUCKET" ]]; then WORKDIR="$BUCKET/hydra_jax/$NAME"; else WORKDIR="/tmp/hydra_jax_run"; fi
fi
if [[ ! -f "$REPO/$CONFIG" ]]; then
  echo "tpu_vm.sh: no config file $REPO/$CONFIG" >&2
  exit 2
fi

GCLOUD=(gcloud compute tpus tpu-vm)
WHERE=(--zone="$ZONE")
if [[ -n "$PROJECT" ]]; then WHERE+=(--project="$PROJECT"); fi
REMOTE_SRC="hydra_jax_src"
ARCHIVE="/tmp/hydra_jax_src.tar.gz"

# Print a command in a form that can be pasted back into a shell; run it unless --dry-run.
run() {
  printf '%q ' "$@"; printf '\n'
  if [[ "$DRY_RUN" == 0 ]]; then "$@"; fi
}

echo "# 1. create or reuse the TPU VM $NAME"
if [[ "$DRY_RUN" == 1 ]]; then
  echo "# (create runs only when describe finds no VM)"
  run "${GCLOUD[@]}" describe "$NAME" "${WHERE[@]}"
  CREATE=1
elif STATE="$("${GCLOUD[@]}" describe "$NAME" "${WHERE[@]}" --format='value(state)' 2>/dev/null)"; then
  if [[ "$STATE" == PREEMPTED ]]; then   # a preempted Spot VM cannot restart: make a new one
    run "${GCLOUD[@]}" delete "$NAME" "${WHERE[@]}" --quiet
    CREATE=1
  else
    echo "# reusing $NAME ($STATE)"
    CREATE=0
  fi
else
  CREATE=1
fi
if [[ "$CREATE" == 1 ]]; then
  CREATE_ARGS=(--accelerator-type="$ACCELERATOR" --version="$VERSION")
  if [[ "$SPOT" == 1 ]]; then CREATE_ARGS+=(--spot); fi
  run "${GCLOUD[@]}" create "$NAME" "${WHERE[@]}" "${CREATE_ARGS[@]}"
fi

echo "# 2. copy the package to every worker and install it"
if [[ "$DRY_RUN" == 1 ]]; then
  echo "# (packing the tracked files of $REPO into $ARCHIVE)"
else
  git -C "$REPO" archive --format=tar.gz -o "$ARCHIVE" HEAD
fi
run "${GCLOUD[@]}" scp "$ARCHIVE" "$NAME:~/" "${WHERE[@]}" --worker=all
INSTALL="rm -rf ~/$REMOTE_SRC ~/hydra_jax_data && mkdir -p ~/$REMOTE_SRC && tar xzf ~/$(basename "$ARCHIVE") -C ~/$REMOTE_SRC"
INSTALL+=" && python3 -m pip install -q -U 'jax[tpu]' dm-haiku && python3 -m pip install -q -e ~/$REMOTE_SRC"
if [[ "$WORKDIR" == gs://* ]]; then INSTALL+=" && python3 -m pip install -q gcsfs"; fi   # epath's gs:// backend
run "${GCLOUD[@]}" ssh "$NAME" "${WHERE[@]}" --worker=all --command="$INSTALL"
MAIN_ARGS=(--config="$CONFIG" --workdir="$WORKDIR" --config.distributed=auto)
if [[ -n "$MANUAL_DIR" ]]; then
  run "${GCLOUD[@]}" scp --recurse "$MANUAL_DIR" "$NAME:~/hydra_jax_data" "${WHERE[@]}" --worker=all
  MAIN_ARGS+=(--config.data.manual_dir=../hydra_jax_data)   # relative to ~/$REMOTE_SRC
fi

echo "# 3. run the main job on all hosts"
COMMAND="cd ~/$REMOTE_SRC && python3 -m hydra_jax.main"
for arg in "${MAIN_ARGS[@]}" "${EXTRA_ARGS[@]+"${EXTRA_ARGS[@]}"}"; do
  COMMAND+=" $(printf '%q' "$arg")"
done
run "${GCLOUD[@]}" ssh "$NAME" "${WHERE[@]}" --worker=all --command="$COMMAND"

echo "# 4. copy the results back from worker 0"
if [[ "$DRY_RUN" == 0 ]]; then mkdir -p "$RESULTS"; fi
if [[ "$WORKDIR" == gs://* ]]; then
  run gcloud storage cp --recursive "$WORKDIR" "$RESULTS"
else
  run "${GCLOUD[@]}" scp --recurse "$NAME:$WORKDIR" "$RESULTS" "${WHERE[@]}" --worker=0
fi

if [[ "$DELETE" == 1 ]]; then
  echo "# 5. delete the TPU VM"
  run "${GCLOUD[@]}" delete "$NAME" "${WHERE[@]}" --quiet
fi
echo "# done: results in $RESULTS/$(basename "$WORKDIR")/report.md"
