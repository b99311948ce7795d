#!/usr/bin/env bash
# Run a hydra_jax sweep on a Cloud TPU VM (single host or a multi-host slice) with gcloud.
#
#   launch/tpu_vm.sh run --name hydra --zone us-central2-b --accelerator-type v4-32 \
#       --config configs/chinchilla7b.py --checkpoint gs://BUCKET/chinchilla7b \
#       --bucket gs://BUCKET -- --config.mesh.model=8 --config.sweep.chunk_size=64
#   launch/tpu_vm.sh logs --name hydra       # follow worker 0's log (Ctrl-C leaves it running)
#   launch/tpu_vm.sh status --name hydra     # running or stopped, on every worker
#   launch/tpu_vm.sh fetch --name hydra --bucket gs://BUCKET --results ./results_7b
#   launch/tpu_vm.sh delete --name hydra
#
# run: (1) refuse uncommitted changes, pack `git archive HEAD` and check the config is in
# it (what is shipped is what was checked); (2) reuse the TPU VM if `describe` finds it,
# else create it with the TPU runtime of its accelerator type (v4: tpu-ubuntu2204-base,
# v5e/v5litepod: v2-alpha-tpuv5-lite, v5p: v2-alpha-tpuv5, v6e: v2-alpha-tpuv6e;
# --version overrides); (3) copy the archive to every worker and install it with jax[tpu]
# into a Python 3.11 venv made by uv (the VM's own python3 is 3.10); copy the checkpoint
# (a local folder, or a gs:// one copied by each worker) and --manual-dir; (4) start
# `python -m hydra_jax.main` under nohup on all workers at once (each host joins the global
# mesh through jax.distributed), logging to ~/hydra_jax_run.log. With --wait it then
# waits for the job, fetches the results and (--delete) deletes the VM.
# Run the same command again after a preemption: the job resumes from its saved chunks.
# With --bucket gs://BUCKET the workdir defaults to gs://BUCKET/hydra_jax/NAME, which
# survives a preempted (Spot) VM's lost disk, and fetch copies it from the bucket.
#
# --dry-run prints every command instead of running it. Anything after `--` is passed to
# hydra_jax.main (config overrides).
set -euo pipefail

SUBCOMMAND="run"
NAME="hydra-jax"
ZONE="us-central2-b"
PROJECT=""
ACCELERATOR="v4-8"
VERSION=""
CONFIG="configs/tiny.py"
WORKDIR=""
BUCKET=""
RESULTS="./results"
MANUAL_DIR=""
CHECKPOINT=""
WORKER=0
SPOT=0
WAIT=0
DELETE=0
DRY_RUN=0
EXTRA_ARGS=()
PYTHON_VERSION="3.11"                    # pyproject.toml's requires-python
UV_INSTALLER="https://astral.sh/uv/install.sh"
REMOTE_SRC="hydra_jax_src"               # the remote names, all in the workers' home folders
REMOTE_VENV="hydra_jax_venv"
REMOTE_CHECKPOINT="hydra_jax_checkpoint"
REMOTE_DATA="hydra_jax_data"
LOG="hydra_jax_run.log"
PID="hydra_jax_run.pid"
ARCHIVE="/tmp/hydra_jax_src.tar.gz"

usage() {
  sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'
  cat <<EOF
Subcommands: run (the default), logs, status, fetch, delete. Options (defaults in brackets):
  --name NAME               TPU VM name [$NAME]
  --zone ZONE               [$ZONE]
  --project PROJECT         gcloud project [gcloud's default]
  --accelerator-type TYPE   e.g. v4-8, v4-32, v5litepod-16, v5p-8, v6e-8 [$ACCELERATOR]
  --version VERSION         TPU runtime [the accelerator type's, see above]
  --config FILE             job config, relative to the repository [$CONFIG]
  --workdir DIR             results folder on the VM or a bucket URL
                            [gs://BUCKET/hydra_jax/NAME with --bucket, else /tmp/hydra_jax_run]
  --bucket gs://BUCKET      keep the workdir in this Cloud Storage bucket (preemption-safe)
  --checkpoint PATH         a local checkpoint (file or folder) or gs:// URL, put on every
                            worker and passed as --config.checkpoint
  --results DIR             local folder that receives the results (fetch) [$RESULTS]
  --manual-dir DIR          local folder with known_1000.json / counterfact.json to copy over
  --worker N                the worker whose log \`logs\` follows [$WORKER]
  --spot                    create a Spot VM (cheaper, may be preempted: rerun to resume)
  --wait                    run: wait for the job, then fetch (and --delete)
  --delete                  run --wait: delete the VM when done
  --dry-run                 print the commands, run nothing
EOF
}

die() { echo "tpu_vm.sh: $*" >&2; exit 2; }

case "${1:-}" in
  run|logs|status|fetch|delete) SUBCOMMAND="$1"; shift ;;
esac
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
    --checkpoint) CHECKPOINT="${2%/}"; shift 2 ;;
    --results) RESULTS="$2"; shift 2 ;;
    --manual-dir) MANUAL_DIR="$2"; shift 2 ;;
    --worker) WORKER="$2"; shift 2 ;;
    --spot) SPOT=1; shift ;;
    --wait) WAIT=1; shift ;;
    --delete) DELETE=1; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; EXTRA_ARGS=("$@"); break ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -n "$BUCKET" && "$BUCKET" != gs://* ]]; then die "--bucket must be a gs:// URL, not $BUCKET"; fi
if [[ -z "$WORKDIR" ]]; then
  if [[ -n "$BUCKET" ]]; then WORKDIR="$BUCKET/hydra_jax/$NAME"; else WORKDIR="/tmp/hydra_jax_run"; fi
fi
if [[ "$SUBCOMMAND" == run && ! -f "$REPO/$CONFIG" ]]; then die "no config file $REPO/$CONFIG"; fi
if [[ -n "$CHECKPOINT" && "$CHECKPOINT" != gs://* && ! -e "$CHECKPOINT" ]]; then
  die "no checkpoint $CHECKPOINT (a local file or folder, or a gs:// URL)"
fi
if [[ "$DELETE" == 1 && "$SUBCOMMAND" == run && "$WAIT" == 0 ]]; then
  die "--delete needs --wait (the job runs on after run returns; or: tpu_vm.sh delete)"
fi

GCLOUD=(gcloud compute tpus tpu-vm)
WHERE=(--zone="$ZONE")
if [[ -n "$PROJECT" ]]; then WHERE+=(--project="$PROJECT"); fi

# Print a command in a form that can be pasted back into a shell; run it unless --dry-run.
run() {
  printf '%q ' "$@"; printf '\n'
  if [[ "$DRY_RUN" == 0 ]]; then "$@"; fi
}

# The TPU runtime (software version) for an accelerator type such as v5litepod-16.
runtime_for() {
  case "$1" in
    v4-*) echo "tpu-ubuntu2204-base" ;;
    v5litepod-*|v5e-*) echo "v2-alpha-tpuv5-lite" ;;
    v5p-*) echo "v2-alpha-tpuv5" ;;
    v6e-*) echo "v2-alpha-tpuv6e" ;;
    *) die "no known TPU runtime for --accelerator-type $1: pass --version" ;;
  esac
}

# Refuse (or, in a dry run, warn about) what would make the shipped code differ from HEAD.
check_shipped() {
  local problem=""
  if ! git -C "$REPO" rev-parse --verify -q HEAD >/dev/null 2>&1; then
    problem="$REPO is not a git checkout: run ships \`git archive HEAD\`"
  elif ! git -C "$REPO" cat-file -e "HEAD:$CONFIG" 2>/dev/null; then
    problem="--config $CONFIG is not committed, so it would not be shipped: commit it"
  elif [[ -n "$(git -C "$REPO" status --porcelain --untracked-files=no)" ]]; then
    problem="uncommitted changes in $REPO would not be shipped (run ships HEAD): commit or stash them"
  fi
  if [[ -n "$problem" && "$DRY_RUN" == 0 ]]; then die "$problem"; fi
  if [[ -n "$problem" ]]; then echo "# warning: $problem"; fi
}

create_or_reuse() {
  echo "# 2. create or reuse the TPU VM $NAME"
  local state create=1
  if [[ "$DRY_RUN" == 1 ]]; then
    echo "# (create runs only when describe finds no VM)"
    run "${GCLOUD[@]}" describe "$NAME" "${WHERE[@]}"
  elif state="$("${GCLOUD[@]}" describe "$NAME" "${WHERE[@]}" --format='value(state)' 2>/dev/null)"; then
    if [[ "$state" == PREEMPTED ]]; then   # a preempted Spot VM cannot restart: make a new one
      run "${GCLOUD[@]}" delete "$NAME" "${WHERE[@]}" --quiet
    else
      echo "# reusing $NAME ($state)"
      create=0
    fi
  fi
  if [[ "$create" == 1 ]]; then
    local args=(--accelerator-type="$ACCELERATOR" --version="$VERSION")
    if [[ "$SPOT" == 1 ]]; then args+=(--spot); fi
    run "${GCLOUD[@]}" create "$NAME" "${WHERE[@]}" "${args[@]}"
  fi
}

# The workers' install: the archive unpacked, uv, a Python 3.11 venv, the package + jax[tpu].
install_command() {
  local pip="uv pip install -q --python ~/$REMOTE_VENV/bin/python"
  local command="rm -rf ~/$REMOTE_SRC ~/$REMOTE_DATA ~/$REMOTE_CHECKPOINT"
  command+=" && mkdir -p ~/$REMOTE_SRC ~/$REMOTE_CHECKPOINT && tar xzf ~/$(basename "$ARCHIVE") -C ~/$REMOTE_SRC"
  command+=" && export PATH=\$HOME/.local/bin:\$PATH"
  command+=" && (command -v uv >/dev/null || curl -LsSf $UV_INSTALLER | sh)"
  command+=" && (test -x ~/$REMOTE_VENV/bin/python || uv venv --python $PYTHON_VERSION ~/$REMOTE_VENV)"
  command+=" && $pip -e ~/$REMOTE_SRC 'jax[tpu]'"
  if [[ "$WORKDIR" == gs://* ]]; then command+=" && $pip gcsfs"; fi   # epath's gs:// backend
  if [[ "$CHECKPOINT" == gs://* ]]; then
    command+=" && gcloud storage cp --recursive $(printf '%q' "$CHECKPOINT") ~/$REMOTE_CHECKPOINT/"
  fi
  echo "$command"
}

ship_and_install() {
  echo "# 3. copy the package to every worker and install it"
  run "${GCLOUD[@]}" scp "$ARCHIVE" "$NAME:~/" "${WHERE[@]}" --worker=all
  run "${GCLOUD[@]}" ssh "$NAME" "${WHERE[@]}" --worker=all --command="$(install_command)"
  MAIN_ARGS=(--config="$CONFIG" --workdir="$WORKDIR" --config.distributed=auto)
  if [[ -n "$CHECKPOINT" && "$CHECKPOINT" != gs://* ]]; then
    run "${GCLOUD[@]}" scp --recurse "$CHECKPOINT" "$NAME:~/$REMOTE_CHECKPOINT/" "${WHERE[@]}" --worker=all
  fi
  if [[ -n "$CHECKPOINT" ]]; then   # relative to ~/$REMOTE_SRC, where the job runs
    MAIN_ARGS+=(--config.checkpoint="../$REMOTE_CHECKPOINT/$(basename "$CHECKPOINT")")
  fi
  if [[ -n "$MANUAL_DIR" ]]; then
    run "${GCLOUD[@]}" scp --recurse "$MANUAL_DIR" "$NAME:~/$REMOTE_DATA" "${WHERE[@]}" --worker=all
    MAIN_ARGS+=(--config.data.manual_dir="../$REMOTE_DATA")
  fi
}

launch() {
  echo "# 4. start the main job on all hosts, detached (nohup), logging to ~/$LOG"
  local job="~/$REMOTE_VENV/bin/python -m hydra_jax.main" arg
  for arg in "${MAIN_ARGS[@]}" "${EXTRA_ARGS[@]+"${EXTRA_ARGS[@]}"}"; do
    job+=" $(printf '%q' "$arg")"
  done
  run "${GCLOUD[@]}" ssh "$NAME" "${WHERE[@]}" --worker=all --command="cd ~/$REMOTE_SRC && nohup $job > ~/$LOG 2>&1 < /dev/null & echo \$! > ~/$PID"
  echo "# follow it: $0 logs --name $NAME; check it: $0 status --name $NAME"
}

ALIVE="kill -0 \$(cat ~/$PID 2>/dev/null) 2>/dev/null"
status() {
  run "${GCLOUD[@]}" ssh "$NAME" "${WHERE[@]}" --worker=all --command="if $ALIVE; then echo \"\$(hostname): running\"; else echo \"\$(hostname): stopped\"; fi; tail -n 3 ~/$LOG"
}

logs() {
  run "${GCLOUD[@]}" ssh "$NAME" "${WHERE[@]}" --worker="$WORKER" --command="tail -n 100 -F ~/$LOG"
}

wait_for_job() {
  echo "# 5. wait for the job on worker 0"
  run "${GCLOUD[@]}" ssh "$NAME" "${WHERE[@]}" --worker=0 --command="while $ALIVE; do sleep 60; done; tail -n 5 ~/$LOG"
}

fetch() {
  echo "# copy the results back"
  if [[ "$DRY_RUN" == 0 ]]; then mkdir -p "$RESULTS"; fi
  if [[ "$WORKDIR" == gs://* ]]; then
    run gcloud storage cp --recursive "$WORKDIR" "$RESULTS"
  else
    run "${GCLOUD[@]}" scp --recurse "$NAME:$WORKDIR" "$RESULTS" "${WHERE[@]}" --worker=0
  fi
  echo "# results in $RESULTS/$(basename "$WORKDIR")/report.md"
}

delete() {
  echo "# delete the TPU VM $NAME"
  run "${GCLOUD[@]}" delete "$NAME" "${WHERE[@]}" --quiet
}

case "$SUBCOMMAND" in
  logs) logs; exit 0 ;;
  status) status; exit 0 ;;
  fetch) fetch; exit 0 ;;
  delete) delete; exit 0 ;;
esac

if [[ -z "$VERSION" ]]; then VERSION="$(runtime_for "$ACCELERATOR")"; fi
echo "# 1. pack the committed tree (HEAD) and check the config is in it"
check_shipped
run git -C "$REPO" archive --format=tar.gz -o "$ARCHIVE" HEAD
if [[ "$DRY_RUN" == 0 ]] && ! tar -tzf "$ARCHIVE" "$CONFIG" >/dev/null 2>&1; then
  die "--config $CONFIG is not in the shipped archive $ARCHIVE"
fi
create_or_reuse
ship_and_install
launch
if [[ "$WAIT" == 1 ]]; then
  wait_for_job
  fetch
  if [[ "$DELETE" == 1 ]]; then delete; fi
fi
