#!/usr/bin/env bash
# WAL recovery benchmark: fill the WAL with about SPANS spans (nothing flushed to Parquet), kill
# the server with SIGKILL, restart it, and print how long the replay took and how long until the
# receivers were open again.
#
#   bench/recovery.sh [SPANS=1000000]
set -euo pipefail
cd "$(dirname "$0")/.."
spans=${1:-1000000}

cargo build --release --quiet
bin=target/release/headroom
data=$(mktemp -d)
trap 'rm -rf "$data" "$data".*' EXIT
# Keep everything in memory and in the WAL: no size or age flush during the run.
args=(--data-dir "$data" --otlp-grpc-addr 127.0.0.1:0 --otlp-http-addr 127.0.0.1:0
  --http-addr 127.0.0.1:0 --flush-max-age-seconds 86400 --flush-max-rows 100000000
  --flush-max-bytes $((3 << 30)) --max-buffer-bytes $((8 << 30)))

wait_ready() {
  for _ in $(seq 600); do grep -q ready "$1" 2>/dev/null && return; sleep 0.05; done
  echo "server did not start" >&2; exit 1
}

$bin serve "${args[@]}" > "$data.ready" 2> "$data.log" &
pid=$!
wait_ready "$data.ready"
grpc=$(grep -o 'otlp_grpc=[^ ]*' "$data.ready" | cut -d= -f2)
rate=200000
$bin loadgen --endpoint "http://$grpc" --protocol grpc --rate $rate \
  --duration-seconds $(( (spans + rate - 1) / rate )) --batch-spans 512 --concurrency 8 --metrics=false
kill -KILL $pid
wait $pid 2>/dev/null || true
echo "WAL on disk: $(du -sb "$data/wal" | cut -f1) bytes in $(ls "$data/wal" | wc -l) segments"

start=$(date +%s.%N)
$bin serve "${args[@]}" > "$data.ready2" 2> "$data.log2" &
pid=$!
wait_ready "$data.ready2"
ready=$(date +%s.%N)
grep "WAL replayed" "$data.log2" | sed 's/\x1b\[[0-9;]*m//g'
echo "process start to ready line: $(awk -v a="$start" -v b="$ready" 'BEGIN {printf "%.0f", (b - a) * 1000}') ms"
kill -TERM $pid
wait $pid
