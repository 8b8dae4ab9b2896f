#!/usr/bin/env bash
# Object storage and Ballista on one machine: an S3 server (s3s-fs) on loopback, a writer
# `headroom serve --storage s3://…` loaded with the demo's traffic, then the same KPI queries
# timed on that writer (in-process engine) and on a second server whose queries run on a
# Ballista scheduler with two executors (`headroom ballista …`). Prints the ingest figures of
# the writer (loadgen's throughput, the objects it published) and, per query, the median and
# best wall time of RUNS runs over the HTTP API, for each engine.
#
#   bench/cluster.sh [HISTORY_HOURS=6] [RATE_SPANS_PER_SECOND=50] [RUNS=7]
#
# HEADROOM_BIN runs that binary instead of building target/release/headroom; S3S_FS_BIN is
# the s3s-fs server (`cargo install s3s-fs --features binary`).
set -euo pipefail
cd "$(dirname "$0")/.."
hours=${1:-6}
rate=${2:-50}
runs=${3:-7}
bin=${HEADROOM_BIN:-target/release/headroom}
[ -n "${HEADROOM_BIN:-}" ] || cargo build --release --quiet
s3s=${S3S_FS_BIN:-$(command -v s3s-fs)}
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_line() { for _ in $(seq 600); do grep -q "$2" "$1" 2>/dev/null && return; sleep 0.05; done; echo "no '$2' in $1" >&2; exit 1; }

mkdir -p "$work/bucket/headroom"
s3_port=$(free_port)
"$s3s" --host 127.0.0.1 --port "$s3_port" --access-key bench --secret-key bench-secret-key "$work/bucket" > "$work/s3.log" 2>&1 &
pids+=($!)
sleep 1
storage=(--storage s3://headroom/bench --storage-option "aws_endpoint=http://127.0.0.1:$s3_port"
  --storage-option aws_allow_http=true --storage-option aws_access_key_id=bench
  --storage-option aws_secret_access_key=bench-secret-key --storage-option aws_region=us-east-1)

# Starts `headroom serve` named $1 with the remaining flags; sets http_$1 and grpc_$1.
serve() {
  local name=$1; shift
  $bin serve --data-dir "$work/$name" --otlp-grpc-addr 127.0.0.1:0 --otlp-http-addr 127.0.0.1:0 \
    --http-addr 127.0.0.1:0 --pg-addr 127.0.0.1:0 --keda-grpc-addr 127.0.0.1:0 \
    --forecast-interval-seconds 0 --scaling-interval-seconds 0 --anomaly-interval-seconds 0 \
    --storage-refresh-seconds 1 "${storage[@]}" "$@" > "$work/$name.ready" 2> "$work/$name.log" &
  pids+=($!)
  wait_line "$work/$name.ready" ready
  printf -v "http_$name" '%s' "$(grep -o ' http=[^ ]*' "$work/$name.ready" | cut -d= -f2)"
  printf -v "grpc_$name" '%s' "$(grep -o 'otlp_grpc=[^ ]*' "$work/$name.ready" | cut -d= -f2)"
}
sql() { curl -sf "http://$1/api/v1/sql" -H 'content-type: application/json' -d "{\"sql\": \"$2\"}"; }

serve writer
echo "== ingest: ${hours} h of the demo's traffic at ${rate} spans/s into the writer, published to S3"
$bin loadgen --endpoint "http://$grpc_writer" --protocol grpc --rate "$rate" \
  --history-days "$(awk -v h="$hours" 'BEGIN {print h / 24}')" 2>/dev/null | tail -1
start=$(date +%s.%N)
kill -TERM "${pids[-1]}"; wait "${pids[-1]}" || true
echo "shutdown flush and publish: $(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN {printf "%.2f", e - s}') s"
serve writer
echo "objects in the bucket: $(find "$work/bucket/headroom/bench/writers" -name '*.parquet' | wc -l) Parquet files, $(du -sh "$work/bucket/headroom/bench/writers" | cut -f1)"
echo "spans: $(sql "$http_writer" 'SELECT count(*) FROM spans' | grep -o '[0-9]\+]' | tr -d ])"

sched_port=$(free_port)
$bin ballista scheduler --addr "127.0.0.1:$sched_port" "${storage[@]}" > "$work/scheduler.ready" 2> "$work/scheduler.log" &
pids+=($!)
wait_line "$work/scheduler.ready" ready
for i in 1 2; do
  $bin ballista executor --scheduler "127.0.0.1:$sched_port" --bind-host 127.0.0.1 \
    --flight-port "$(free_port)" --grpc-port "$(free_port)" --task-slots 2 \
    --work-dir "$work/executor-$i" "${storage[@]}" > "$work/executor-$i.ready" 2> "$work/executor-$i.log" &
  pids+=($!)
done
serve cluster --query-engine ballista --ballista-scheduler "df://127.0.0.1:$sched_port"
for _ in $(seq 100); do sql "$http_cluster" 'SELECT 1 FROM spans LIMIT 1' > /dev/null 2>&1 && break; sleep 0.2; done

# Median and best of $runs timed runs of $2 against $1 (after one warm-up).
timed() {
  sql "$1" "$2" > /dev/null
  for _ in $(seq "$runs"); do
    curl -sf -o /dev/null -w '%{time_total}\n' "http://$1/api/v1/sql" -H 'content-type: application/json' -d "{\"sql\": \"$2\"}"
  done | sort -n | awk '{a[NR]=$1} END {printf "median %6.0f ms  best %6.0f ms", a[int((NR+1)/2)]*1000, a[1]*1000}'
}
echo "== queries: in-process engine vs Ballista (1 scheduler, 2 executors x 2 slots), ${runs} runs"
while IFS='|' read -r name query; do
  [ -n "$name" ] || continue
  if [ "$(sql "$http_writer" "$query" | md5sum)" != "$(sql "$http_cluster" "$query" | md5sum)" ]; then
    echo "$name: the answers differ" >&2
  fi
  printf '%-28s local: %s   ballista: %s\n' "$name" "$(timed "$http_writer" "$query")" "$(timed "$http_cluster" "$query")"
done <<'QUERIES'
service p99 over spans|SELECT service_name, count(*), approx_percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ns) FROM spans WHERE span_kind = 'SERVER' GROUP BY 1 ORDER BY 1
distinct traces|SELECT count(DISTINCT trace_id) FROM spans
service_kpi_1h|SELECT * FROM service_kpi_1h ORDER BY service_name, \"time\"
endpoint_kpi_1m|SELECT service_name, sum(requests) FROM endpoint_kpi_1m GROUP BY 1 ORDER BY 1
QUERIES
