"""Drives Headroom's PostgreSQL wire protocol with psycopg 3, as Python tools do: the extended
protocol with server-side parameters, text and binary results, catalog queries, a refusal.
Prints one JSON object for the Rust test to check. Usage: psycopg_client.py "<conninfo>"."""

import json
import sys

import psycopg

report = {}
with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    # What pgx's Ping sends over the simple protocol.
    report["ping"] = psycopg.pq.ExecStatus(conn.pgconn.exec_(b"-- ping").status).name

    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM spans WHERE service_name = %s", ("checkout",))
        report["count_text"] = cur.fetchone()[0]
    with conn.cursor(binary=True) as cur:
        cur.execute(
            "SELECT count(*) FROM spans WHERE service_name = %s AND duration_ns >= %s",
            ("checkout", 0),
        )
        report["count_binary"] = cur.fetchone()[0]
        cur.execute("SELECT start_time, trace_id FROM spans ORDER BY start_time LIMIT 1")
        start_time, trace_id = cur.fetchone()
        report["start_time_tz"] = start_time.tzname()
        report["trace_id_len"] = len(trace_id)

    with conn.cursor() as cur:
        cur.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
            "AND table_type IN ('BASE TABLE', 'VIEW') ORDER BY table_name",
            ("public",),
        )
        report["tables"] = [r[0] for r in cur.fetchall()]
        cur.execute(
            "SELECT column_name, data_type, udt_name FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
            ("public", "spans"),
        )
        columns = {name: (data_type, udt) for name, data_type, udt in cur.fetchall()}
        report["start_time_udt"] = columns["start_time"][1]

    try:
        with conn.cursor() as cur:
            cur.execute("DROP TABLE spans")
        report["refused_sqlstate"] = None
    except psycopg.Error as e:
        report["refused_sqlstate"] = e.sqlstate

print(json.dumps(report))
