#!/usr/bin/env bash
# `make cluster-demo`: a two-node Ray cluster on this machine that has never seen the project (its Python,
# CLUSTER_PY, has Ray and PyTorch at the project's versions and nothing else), a fresh auth token, and the
# quickstart submitted to it with `ray job submit` from the project's environment as the README says. The
# README's "Trying it on one machine" shows the lines between the markers; a test keeps the two the same.
set -euo pipefail
CLUSTER=${CLUSTER:-.venv-cluster}   # the cluster's environment: Ray, PyTorch
PROJECT=${PROJECT:-.venv}           # yours: the project installed
DEMO=${DEMO:-/tmp/deepmimic-cluster-demo}
rm -rf "$DEMO" && mkdir -p "$DEMO"
trap '$CLUSTER/bin/ray stop --force >/dev/null 2>&1 || true' EXIT
# --- the README's steps ---
# 1. a fresh token, here for this demo only (on a real head: `ray get-auth-token --generate`, once)
HOME=$DEMO $CLUSTER/bin/ray get-auth-token --generate >/dev/null
export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=$DEMO/.ray/auth_token   # every `ray` command sends it
# 2. two nodes, each with its own temp folder and ports (a node sharing another's deletes the job's files)
$CLUSTER/bin/ray start --head --port=6390 --dashboard-host=127.0.0.1 --dashboard-port=8275 --num-cpus=1 \
    --temp-dir=$DEMO/head
$CLUSTER/bin/ray start --address=127.0.0.1:6390 --num-cpus=1 --temp-dir=$DEMO/node2 \
    --dashboard-agent-listen-port=52375 --dashboard-agent-grpc-port=52376 --runtime-env-agent-port=52377 \
    --metrics-export-port=52378
# 3. the job ships the project (clusters/runtime_env.yaml); `ray job submit` follows its logs to the end
$PROJECT/bin/ray job submit --address http://127.0.0.1:8275 --working-dir . \
    --runtime-env clusters/runtime_env.yaml -- \
    python -m deepmimic.cli sweep search_spaces/quickstart.yaml --storage $DEMO/storage
# 4. outputs, on the head's disk: STORAGE/NAME/ (results, report, MLflow store) and STORAGE/cache/
sed -n '/^| /p' $DEMO/storage/quickstart/report.md | head -8
echo "outputs: $DEMO/storage/quickstart/   mentor cache: $DEMO/storage/cache/"
echo "MLflow:  $PROJECT/bin/mlflow ui --backend-store-uri sqlite:///$DEMO/storage/quickstart/mlflow.db"
# 5. stop both nodes
$CLUSTER/bin/ray stop
# --- end of the README's steps ---
