#!/usr/bin/env bash
# SQL serving benchmark over real clients: pgbench runs a per-service KPI query and a point
# query over the PostgreSQL wire protocol (simple and extended protocol), then psql and curl
# fetch one large result over the wire and in each HTTP format.
#
#   bench/sql.sh [SPANS=1000000] [SECONDS=10] [CLIENTS=4]
set -euo pipefail
cd "$(dirname "$0")/.."
spans=${1:-1000000}
seconds=${2:-10}
clients=${3:-4}
pgbench=$(ls /usr/lib/postgresql/*/bin/pgbench 2>/dev/null | tail -1)
[ -x "$pgbench" ] || { echo "pgbench not found (Debian: postgresql-client)" >&2; exit 1; }

cargo build --release --quiet
bin=target/release/headroom
data=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$data" "$data".*' EXIT
# Starts the server on $data and reads its ports from the ready line.
start() {
  $bin serve --data-dir "$data" --otlp-grpc-addr 127.0.0.1:0 --otlp-http-addr 127.0.0.1:0 \
    --http-addr 127.0.0.1:0 --pg-addr 127.0.0.1:0 --keda-grpc-addr 127.0.0.1:0 > "$data.ready" 2> "$data.log" &
  pid=$!
  for _ in $(seq 600); do grep -q ready "$data.ready" 2>/dev/null && break; sleep 0.05; done
  grpc=$(grep -o 'otlp_grpc=[^ ]*' "$data.ready" | cut -d= -f2)
  http=$(grep -o ' http=[^ ]*' "$data.ready" | cut -d= -f2)
  pg=$(grep -o 'pg=[^ ]*' "$data.ready" | cut -d= -f2)
}
sql() { curl -sf "http://$http/api/v1/sql" -H 'content-type: application/json' -d "{\"sql\": \"$1\"}"; }

start
rate=100000
$bin loadgen --endpoint "http://$grpc" --protocol grpc --rate $rate \
  --duration-seconds $(( (spans + rate - 1) / rate )) --batch-spans 512 --concurrency 4 \
  --metrics=false > /dev/null
# Everything in Parquet, as after a normal flush.
kill -TERM $pid; wait $pid || true
start
echo "spans stored: $(sql 'SELECT count(*) FROM spans' | grep -o '[0-9]\+]' | tr -d ])"

cat > "$data.kpi.sql" <<'SQL'
SELECT service_name, count(*) AS requests, sum(CASE WHEN is_error THEN 1 ELSE 0 END) AS errors, approx_percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ns) AS p99 FROM spans WHERE span_kind = 'SERVER' GROUP BY service_name;
SQL
cat > "$data.point.sql" <<'SQL'
\set n random(1, 1000)
SELECT count(*) FROM spans WHERE service_name = 'checkout' AND duration_ns > :n;
SQL
export PGHOST=${pg%:*} PGPORT=${pg##*:} PGUSER=bench PGDATABASE=headroom PGSSLMODE=disable
for script in kpi point; do
  for mode in simple extended; do
    echo "== pgbench $script query, $mode protocol, $clients clients, ${seconds}s"
    "$pgbench" -n -M $mode -c "$clients" -j "$clients" -T "$seconds" -f "$data.$script.sql" 2>&1 \
      | grep -E '^(number of transactions actually processed|latency average|tps)'
  done
done

rows=200000
q="SELECT * FROM spans LIMIT $rows"
echo "== $rows spans, every column"
t0=$(date +%s.%N); psql -X -q -A -t -c "$q" > "$data.psql.out"; t1=$(date +%s.%N)
echo "psql (text): $(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.0f", (b - a) * 1000}') ms, $(stat -c %s "$data.psql.out") bytes"
for format in json csv arrow; do
  curl -sf "http://$http/api/v1/sql?format=$format" -H 'content-type: application/json' \
    -d "{\"sql\": \"$q\"}" -o "$data.$format.out" -w "HTTP $format: %{time_total} s, %{size_download} bytes\n"
done
