#!/usr/bin/env bash
# Ingest benchmark: a release `headroom serve` and `headroom loadgen` on the same machine, OTLP/gRPC,
# batches of 512 spans. Prints loadgen's throughput and acknowledgement latency, the server's peak
# RSS, its WAL activity (records and fsyncs: requests per shared fsync), the on-disk bytes per
# span after the shutdown flush and the server's CPU seconds (user + system, over its whole life:
# start, ingest, the shutdown flush). At a fixed RATE the CPU seconds are what ingest costs
# without the load generator's share of the cores, which the throughput at saturation includes.
#
#   bench/ingest.sh [DURATION_SECONDS=30] [CONCURRENCY=8] [RATE=0 (as fast as possible)] [WAL_SYNC=fsync|os|off] [ROLLUPS=true|false]
#
# HEADROOM_BIN runs that binary instead of building target/release/headroom. Needs GNU time.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-30}
concurrency=${2:-8}
rate=${3:-0}
wal_sync=${4:-fsync}
rollups=${5:-true}

bin=${HEADROOM_BIN:-target/release/headroom}
[ -n "${HEADROOM_BIN:-}" ] || cargo build --release --quiet
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT

/usr/bin/time -f "%U %S" -o "$data.time" $bin serve --data-dir "$data" \
  --otlp-grpc-addr 127.0.0.1:0 --otlp-http-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 \
  --pg-addr 127.0.0.1:0 --keda-grpc-addr 127.0.0.1:0 \
  --wal-sync "$wal_sync" --rollups "$rollups" > "$data.ready" 2> "$data.log" &
timer=$!
for _ in $(seq 100); do grep -q ready "$data.ready" 2>/dev/null && break; sleep 0.1; done
pid=$(pgrep -P "$timer")
grpc=$(grep -o 'otlp_grpc=[^ ]*' "$data.ready" | cut -d= -f2)
http=$(grep -o ' http=[^ ]*' "$data.ready" | cut -d= -f2)

$bin loadgen --endpoint "http://$grpc" --protocol grpc --rate "$rate" \
  --duration-seconds "$duration" --batch-spans 512 --concurrency "$concurrency" --metrics=false

rss_kib=$(grep VmHWM /proc/$pid/status | awk '{print $2}')
wal=$(curl -s "http://$http/metrics" | awk '/^headroom_wal_(records|syncs|bytes)_total/ {printf "%s=%s ", $1, $2}')
kill -TERM $pid
wait $timer
spans=$($bin query --data-dir "$data" "SELECT count(*) AS n FROM spans" | awk -F'|' 'NR==4 {gsub(/ /,"",$2); print $2}')
bytes=$(find "$data/spans" -name '*.parquet' -printf '%s\n' | awk '{s+=$1} END {print s}')
echo "server peak RSS: $((rss_kib / 1024)) MiB"
echo "WAL (--wal-sync $wal_sync, --rollups $rollups): ${wal:-none}"
echo "stored spans: $spans in $bytes bytes of Parquet = $(awk -v b="$bytes" -v s="$spans" 'BEGIN {printf "%.1f", b / s}') bytes/span"
echo "server CPU: $(awk '{printf "%.2f", $1 + $2}' "$data.time") s"
rm -f "$data.ready" "$data.log" "$data.time"
