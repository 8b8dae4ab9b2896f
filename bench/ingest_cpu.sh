#!/usr/bin/env bash
# What ingest costs in server CPU at a fixed load: a release `headroom serve` and `headroom loadgen`
# (OTLP/gRPC, 512-span requests, 8 in flight) at RATE spans/s for DURATION seconds. Prints the
# server's CPU seconds (user + system, over its whole life: start, ingest, the shutdown flush),
# its peak RSS and what loadgen sent. Unlike bench/ingest.sh at saturation, the load generator's
# share of the two cores does not enter the figure.
#
#   bench/ingest_cpu.sh [ROLLUPS=true|false] [RATE=100000] [DURATION_SECONDS=20]
#
# HEADROOM_BIN runs that binary instead of building target/release/headroom. Needs GNU time.
set -euo pipefail
cd "$(dirname "$0")/.."
rollups=${1:-true}
rate=${2:-100000}
duration=${3:-20}
bin=${HEADROOM_BIN:-target/release/headroom}
[ -n "${HEADROOM_BIN:-}" ] || cargo build --release --quiet
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT

/usr/bin/time -f "%U %S %M" -o "$data.time" $bin serve --data-dir "$data" \
  --otlp-grpc-addr 127.0.0.1:0 --otlp-http-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 \
  --pg-addr 127.0.0.1:0 --keda-grpc-addr 127.0.0.1:0 --rollups "$rollups" > "$data.ready" 2> "$data.log" &
timer=$!
for _ in $(seq 100); do grep -q ready "$data.ready" 2>/dev/null && break; sleep 0.1; done
grpc=$(grep -o 'otlp_grpc=[^ ]*' "$data.ready" | cut -d= -f2)
sent=$($bin loadgen --endpoint "http://$grpc" --protocol grpc --rate "$rate" \
  --duration-seconds "$duration" --batch-spans 512 --concurrency 8 --metrics=false 2>/dev/null | head -1)
sleep 3
pkill -TERM -f "^$bin serve --data-dir $data" || true
wait $timer
echo "--rollups $rollups: server CPU $(awk '{printf "%.2f s, peak RSS %.0f MB", $1 + $2, $3 / 1024}' "$data.time"); $sent"
rm -f "$data.time" "$data.ready" "$data.log"
