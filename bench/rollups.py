#!/usr/bin/env python3
"""Dashboard queries over a week of spans: Headroom over HTTP and over the PostgreSQL wire,
side by side with DuckDB running equivalent SQL over the same raw Parquet files (exact
percentiles).

    bench/rollups.py [--spans 10000000] [--days 7] [--runs 5] [--bin target/release/headroom]

It starts `headroom serve` on a fresh data directory, writes the history through OTLP/gRPC with
`headroom loadgen --history-days` (20 services, about 200 endpoints), restarts the server so
that everything is in Parquet, then times every query (median of --runs after a first run, once
the server is idle again) and compares the percentiles. Needs a release build and Python's `duckdb` and `psycopg`.
"""

import argparse
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timedelta, timezone

import duckdb
import psycopg

HEALTH = "('/healthz', '/readyz', '/livez', '/health', '/ready', '/live')"


def start(binary, data):
    args = [binary, "serve", "--data-dir", data, "--otlp-grpc-addr", "127.0.0.1:0",
            "--otlp-http-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
            "--pg-addr", "127.0.0.1:0", "--keda-grpc-addr", "127.0.0.1:0",
            # Files compaction replaced go at once: DuckDB reads the directory, not the manifest.
            "--deleted-file-grace-seconds", "0",
            # Compaction of the last flushes and the service graph's rollup run at once after
            # the start, so that waiting for the server to go idle waits for them too.
            "--maintenance-interval-seconds", "1"]
    log = open(os.path.join(data, "..", "server.log"), "a")
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, text=True)
    line = proc.stdout.readline()
    if "ready" not in line:
        sys.exit(f"server did not start: {line!r}")
    ports = dict(re.findall(r"(\w+)=(\S+)", line))
    return proc, ports


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=600)


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_idle(pid, timeout=600):
    """Waits until the server's start-up work (model training over the history, compaction, the
    service graph's rollup) is done: it used under 5 % of a core over the last 2 seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        before = cpu_seconds(pid)
        time.sleep(2)
        if cpu_seconds(pid) - before < 0.1:
            return
    sys.exit("the server never went idle")


def http_sql(addr, sql):
    req = urllib.request.Request(f"http://{addr}/api/v1/sql",
                                 data=json.dumps({"sql": sql}).encode(),
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())["rows"]


def timed(run, runs, settle=lambda: None):
    """The median of `runs` runs after a first one, in ms, the first one's time and the result.
    Headroom's first run may read rollup files from Parquet that it then decodes in the
    background for the next runs, as a dashboard's refreshes find them: `settle` waits for that."""
    t = time.perf_counter()
    run()
    first = (time.perf_counter() - t) * 1000
    settle()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        result = run()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), first, result


def queries(end, slo_window_days):
    t24 = (end - timedelta(hours=24)).isoformat()
    t7 = (end - timedelta(days=7)).isoformat()
    t1 = (end - timedelta(hours=1)).isoformat()
    e = end.isoformat()
    requests = f"""WITH r AS (
      SELECT start_time, service_name, duration_ns, is_error AS bad,
        COALESCE(http_route, CASE WHEN rpc_service IS NOT NULL
          THEN rpc_service || '/' || COALESCE(rpc_method, '') END, span_name) AS endpoint
      FROM spans
      WHERE span_kind IN ('SERVER', 'CONSUMER')
        AND NOT COALESCE(COALESCE(http_route, url_path) IN {HEALTH}, false))"""
    burn = lambda w: (f"CAST(sum(CASE WHEN bad AND start_time >= TIMESTAMPTZ '{e}' - INTERVAL '{w}'"
                      f" THEN 1 ELSE 0 END) AS DOUBLE) / sum(CASE WHEN start_time >= "
                      f"TIMESTAMPTZ '{e}' - INTERVAL '{w}' THEN 1 ELSE 0 END) / 0.001")
    return [
        ("availability + p50/p95/p99 per service per minute, 24 h",
         f"""SELECT "time", service_name, availability, p50_ms, p95_ms, p99_ms FROM service_kpi_1m
             WHERE "time" >= TIMESTAMP '{t24}' AND "time" < TIMESTAMP '{e}'""",
         f"""{requests} SELECT time_bucket(INTERVAL '1 minute', start_time) AS t, service_name,
               1 - avg(bad::INT), quantile_cont(duration_ns, 0.5) / 1e6,
               quantile_cont(duration_ns, 0.95) / 1e6, quantile_cont(duration_ns, 0.99) / 1e6
             FROM r WHERE start_time >= TIMESTAMPTZ '{t24}' AND start_time < TIMESTAMPTZ '{e}'
             GROUP BY 1, 2""", (0, 1), 5),
        ("availability + p50/p95/p99 per service per hour, 7 days",
         f"""SELECT "time", service_name, availability, p50_ms, p95_ms, p99_ms FROM service_kpi_1h
             WHERE "time" >= TIMESTAMP '{t7}' AND "time" < TIMESTAMP '{e}'""",
         f"""{requests} SELECT time_bucket(INTERVAL '1 hour', start_time) AS t, service_name,
               1 - avg(bad::INT), quantile_cont(duration_ns, 0.5) / 1e6,
               quantile_cont(duration_ns, 0.95) / 1e6, quantile_cont(duration_ns, 0.99) / 1e6
             FROM r WHERE start_time >= TIMESTAMPTZ '{t7}' AND start_time < TIMESTAMPTZ '{e}'
             GROUP BY 1, 2""", (0, 1), 5),
        ("SLO burn rates (5 m, 30 m, 1 h, 6 h) and budget, all services",
         """SELECT service_name, sli, error_budget_remaining, burn_rate_5m, burn_rate_30m,
               burn_rate_1h, burn_rate_6h FROM slo_status""",
         f"""{requests} SELECT service_name, 1 - avg(bad::INT),
               1 - avg(bad::INT) / 0.001, {burn('5 minutes')}, {burn('30 minutes')},
               {burn('1 hour')}, {burn('6 hours')}
             FROM r WHERE start_time > TIMESTAMPTZ '{e}' - INTERVAL '{slo_window_days} days'
               AND start_time <= TIMESTAMPTZ '{e}'
             GROUP BY 1""", None, None),
        ("service graph, 1 h",
         f"""SELECT client, server, sum(requests), sum(failed) FROM service_graph_1m
             WHERE "time" >= TIMESTAMP '{t1}' AND "time" < TIMESTAMP '{e}' GROUP BY 1, 2""",
         f"""SELECT c.service_name, s.service_name, count(*),
               sum(CASE WHEN c.is_error OR s.is_error THEN 1 ELSE 0 END)
             FROM spans c JOIN spans s ON s.trace_id = c.trace_id AND s.parent_span_id = c.span_id
             WHERE c.span_kind IN ('CLIENT', 'PRODUCER') AND s.span_kind IN ('SERVER', 'CONSUMER')
               AND c.start_time >= TIMESTAMPTZ '{t1}' AND c.start_time < TIMESTAMPTZ '{e}'
             GROUP BY 1, 2""", None, None),
        ("service graph, 7 days",
         f"""SELECT client, server, sum(requests), sum(failed) FROM service_graph_1m
             WHERE "time" >= TIMESTAMP '{t7}' AND "time" < TIMESTAMP '{e}' GROUP BY 1, 2""",
         f"""SELECT c.service_name, s.service_name, count(*),
               sum(CASE WHEN c.is_error OR s.is_error THEN 1 ELSE 0 END)
             FROM spans c JOIN spans s ON s.trace_id = c.trace_id AND s.parent_span_id = c.span_id
             WHERE c.span_kind IN ('CLIENT', 'PRODUCER') AND s.span_kind IN ('SERVER', 'CONSUMER')
               AND c.start_time >= TIMESTAMPTZ '{t7}' AND c.start_time < TIMESTAMPTZ '{e}'
             GROUP BY 1, 2""", None, None),
        ("top-10 slowest endpoints by p99, 7 days",
         f"""SELECT service_name, endpoint, exp_histogram_percentile(0.99, latency_sketch(
               latency_bucket_index, latency_bucket_count, latency_zero_count)) / 1e6 AS p99_ms
             FROM span_rollup_1h
             WHERE span_kind IN ('SERVER', 'CONSUMER') AND NOT health_check
               AND "time" >= TIMESTAMP '{t7}' AND "time" < TIMESTAMP '{e}'
             GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 10""",
         f"""{requests} SELECT service_name, endpoint, quantile_cont(duration_ns, 0.99) / 1e6
             FROM r WHERE start_time >= TIMESTAMPTZ '{t7}' AND start_time < TIMESTAMPTZ '{e}'
             GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 10""", (0, 1), 2),
    ]


def key(row, cols):
    """The row's key columns, timestamps in one spelling (DuckDB's datetimes, our RFC 3339)."""
    def norm(v):
        if isinstance(v, datetime):
            return v.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        return str(v).removesuffix("Z")
    return tuple(norm(row[c]) for c in cols)


def max_relative_error(ours, exact, key_cols, p99_col):
    """The largest |ours - exact| / exact over the p99 values both answers hold."""
    exact_by_key = {key(r, key_cols): r[p99_col] for r in exact}
    worst, compared = 0.0, 0
    for r in ours:
        want = exact_by_key.get(key(r, key_cols))
        if want and r[p99_col] is not None:
            worst = max(worst, abs(float(r[p99_col]) - want) / want)
            compared += 1
    return worst, compared


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spans", type=int, default=10_000_000)
    p.add_argument("--days", type=float, default=7)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--bin", default="target/release/headroom")
    p.add_argument("--keep", help="keep the data in this directory")
    a = p.parse_args()
    rate = math.ceil(a.spans / (a.days * 86400))
    work = a.keep or tempfile.mkdtemp(prefix="headroom-rollups-")
    data = os.path.join(work, "data")
    os.makedirs(data, exist_ok=True)
    fresh = not os.listdir(data)
    try:
        if fresh:
            proc, ports = start(a.bin, data)
            t = time.perf_counter()
            out = subprocess.run(
                [a.bin, "loadgen", "--endpoint", f"http://{ports['otlp_grpc']}",
                 "--history-days", str(a.days), "--rate", str(rate), "--services", "20",
                 "--endpoints", "200", "--concurrency", "4"],
                check=True, capture_output=True, text=True).stdout.strip()
            print(f"ingest: {out} (wall {time.perf_counter() - t:.0f} s)")
            stop(proc)
        # Without an SLO file every service has a 99.9 % availability SLO over 28 days.
        proc, ports = start(a.bin, data)
        services = http_sql(ports["http"], "SELECT count(DISTINCT service_name) FROM span_rollup_1h")[0][0]
        spans = http_sql(ports["http"], "SELECT count(*) FROM spans")[0][0]
        rollup_rows = [http_sql(ports["http"], f"SELECT count(*) FROM {t}")[0][0]
                       for t in ("span_rollup_1m", "span_rollup_1h", "span_rollup_1d")]
        last = http_sql(ports["http"], 'SELECT max("time") FROM span_rollup_1m')[0][0]
        end = datetime.fromisoformat(last.replace("Z", "+00:00")).astimezone(timezone.utc)
        # Whole hours, so that both sides see the same spans in every bucket.
        end = end.replace(tzinfo=None, minute=0, second=0, microsecond=0)
        print(f"{spans} spans, {services} services; rollup rows: {rollup_rows[0]} per minute, "
              f"{rollup_rows[1]} per hour, {rollup_rows[2]} per day; queries end at "
              f"{end.isoformat()}Z")

        duck = duckdb.connect()
        duck.execute("SET TimeZone = 'UTC'")
        duck.execute(f"CREATE VIEW spans AS SELECT * FROM read_parquet('{data}/spans/*/*/*.parquet')")
        # Wait until compaction has settled and DuckDB sees each stored span once.
        for _ in range(300):
            if duck.execute("SELECT count(*) FROM spans").fetchone()[0] == spans:
                break
            time.sleep(1)
        else:
            sys.exit("DuckDB never saw the same spans as Headroom")
        wait_idle(proc.pid)
        edge_hours = http_sql(ports["http"], 'SELECT count(DISTINCT date_trunc(\'hour\', "time")) '
                              "FROM edge_rollup_1m")[0][0]
        print(f"the service graph's rollup holds {edge_hours} hours")
        pg = psycopg.connect(f"host={ports['pg'].split(':')[0]} port={ports['pg'].split(':')[1]} "
                             "user=headroom dbname=headroom", autocommit=True)
        print()
        print("| query | Headroom HTTP ms | Headroom PG ms | DuckDB ms | DuckDB / Headroom | "
              "p99 max error | Headroom HTTP first run ms |")
        print("|---|---|---|---|---|---|---|")
        for name, ours, theirs, key_cols, p99_col in queries(end, 28):
            http_ms, first_ms, rows = timed(lambda: http_sql(ports["http"], ours), a.runs,
                                            lambda: wait_idle(proc.pid))
            pg_ms, _, _ = timed(lambda: pg.execute(ours).fetchall(), a.runs)
            duck_ms, _, exact = timed(lambda: duck.execute(theirs).fetchall(), a.runs)
            if key_cols is None:
                error = "-"
            else:
                worst, n = max_relative_error(rows, exact, key_cols, p99_col)
                error = f"{worst * 100:.2f} % ({n} values)"
            print(f"| {name} | {http_ms:.1f} | {pg_ms:.1f} | {duck_ms:.1f} | "
                  f"{duck_ms / http_ms:.1f}× | {error} | {first_ms:.1f} |", flush=True)
        pg.close()
        stop(proc)
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
