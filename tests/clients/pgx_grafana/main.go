// Grafana's PostgreSQL data source, step by step, with the pgx driver it uses: the health
// check's "-- ping", the query builder's schema, table and column queries (extended protocol
// with parameters), the frontend's table and column pickers, and panel queries as Grafana's
// macros expand them (simple protocol, text results). Prints one JSON object for the Rust test.
//
// Usage: pgx_grafana "<connection string>" "<from RFC 3339>" "<to RFC 3339>"
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/jackc/pgtype"
	"github.com/jackc/pgx/v4"
)

func must(err error, what string) {
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", what, err)
		os.Exit(1)
	}
}

// A simple-protocol query as Grafana's sql_engine runs panel queries: text results, decoded
// by the column's type OID.
type column struct {
	Name string `json:"name"`
	OID  uint32 `json:"oid"`
}

type result struct {
	Columns []column   `json:"columns"`
	Rows    [][]string `json:"rows"`
	Tag     string     `json:"tag"`
}

func simple(ctx context.Context, conn *pgx.Conn, sql string) []result {
	results, err := conn.PgConn().Exec(ctx, sql).ReadAll()
	must(err, sql)
	var out []result
	for _, r := range results {
		must(r.Err, sql)
		res := result{Tag: string(r.CommandTag)}
		for _, f := range r.FieldDescriptions {
			res.Columns = append(res.Columns, column{Name: string(f.Name), OID: f.DataTypeOID})
		}
		for _, row := range r.Rows {
			var values []string
			for _, v := range row {
				values = append(values, string(v))
			}
			res.Rows = append(res.Rows, values)
		}
		out = append(out, res)
	}
	return out
}

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, os.Args[1])
	must(err, "connect")
	defer conn.Close(ctx)
	from, to := os.Args[2], os.Args[3]
	report := map[string]interface{}{}

	// Save & test.
	must(conn.Ping(ctx), "ping")
	ping := simple(ctx, conn, "-- ping")
	report["ping_results"] = len(ping)

	// The query builder (schema.go): extended protocol, parameters, binary where known.
	var schemas []string
	rows, err := conn.Query(ctx, "SELECT schema_name FROM information_schema.schemata WHERE schema_name NOT LIKE 'pg_%' AND schema_name <> 'information_schema' ORDER BY schema_name")
	must(err, "schemata")
	for rows.Next() {
		var s string
		must(rows.Scan(&s), "scan schema")
		schemas = append(schemas, s)
	}
	must(rows.Err(), "schemata rows")
	report["schemas"] = schemas

	var tables []string
	rows, err = conn.Query(ctx, "SELECT table_name FROM information_schema.tables WHERE table_schema = $1 AND table_type IN ('BASE TABLE', 'VIEW') ORDER BY table_name", "public")
	must(err, "tables")
	for rows.Next() {
		var t string
		must(rows.Scan(&t), "scan table")
		tables = append(tables, t)
	}
	must(rows.Err(), "tables rows")
	report["tables"] = tables

	columns := map[string][]interface{}{}
	rows, err = conn.Query(ctx, "SELECT column_name, data_type, udt_name, numeric_precision, numeric_scale FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position", "public", "spans")
	must(err, "columns")
	for rows.Next() {
		var name, dataType, udt string
		var precision, scale pgtype.Int4
		must(rows.Scan(&name, &dataType, &udt, &precision, &scale), "scan column")
		columns[name] = []interface{}{dataType, udt, precision.Status == pgtype.Present}
	}
	must(rows.Err(), "columns rows")
	report["columns"] = columns

	// The frontend's table and column pickers (simple protocol).
	picker := simple(ctx, conn, `SELECT
        CASE WHEN
              quote_ident(table_schema) IN (
              SELECT
                CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
              FROM
                generate_series(
                  array_lower(string_to_array(current_setting('search_path'),','),1),
                  array_upper(string_to_array(current_setting('search_path'),','),1)
                ) as i,
                string_to_array(current_setting('search_path'),',') s
              )
          THEN quote_ident(table_name)
          ELSE quote_ident(table_schema) || '.' || quote_ident(table_name)
        END AS "table"
        FROM information_schema.tables
        WHERE quote_ident(table_schema) NOT IN ('information_schema',
                                 'pg_catalog',
                                 '_timescaledb_cache',
                                 '_timescaledb_catalog',
                                 '_timescaledb_internal',
                                 '_timescaledb_config',
                                 'timescaledb_information',
                                 'timescaledb_experimental')
        ORDER BY CASE WHEN
              quote_ident(table_schema) IN (
              SELECT
                CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
              FROM
                generate_series(
                  array_lower(string_to_array(current_setting('search_path'),','),1),
                  array_upper(string_to_array(current_setting('search_path'),','),1)
                ) as i,
                string_to_array(current_setting('search_path'),',') s
              ) THEN 0 ELSE 1 END, 1`)
	var picked []string
	for _, r := range picker[0].Rows {
		picked = append(picked, r[0])
	}
	report["table_picker"] = picked
	columnPicker := simple(ctx, conn, `SELECT quote_ident(column_name) AS "column", data_type AS "type"
        FROM information_schema.columns
        WHERE
          CASE WHEN array_length(parse_ident('public.spans'),1) = 2
            THEN quote_ident(table_schema) = (parse_ident('public.spans'))[1]
              AND quote_ident(table_name) = (parse_ident('public.spans'))[2]
            ELSE quote_ident(table_name) = 'public.spans'
              AND
              quote_ident(table_schema) IN (
              SELECT
                CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
              FROM
                generate_series(
                  array_lower(string_to_array(current_setting('search_path'),','),1),
                  array_upper(string_to_array(current_setting('search_path'),','),1)
                ) as i,
                string_to_array(current_setting('search_path'),',') s
              )
          END`)
	pickedColumns := map[string]string{}
	for _, r := range columnPicker[0].Rows {
		pickedColumns[r[0]] = r[1]
	}
	report["column_picker"] = pickedColumns
	version := simple(ctx, conn, "SELECT current_setting('server_version_num')::int/100 as version")
	report["version"] = version[0].Rows[0][0]

	// Panel queries as the macros expand them: $__timeGroupAlias(start_time,'1m') with
	// $__timeFilter(start_time), and $__time(start_time) in a long series with a metric column.
	filter := fmt.Sprintf("start_time BETWEEN '%s' AND '%s'", from, to)
	grouped := simple(ctx, conn, "SELECT floor(extract(epoch from start_time)/60)*60 AS \"time\", count(*) AS spans FROM spans WHERE "+filter+" GROUP BY 1 ORDER BY 1")
	var total int64
	var lastTime float64
	sorted := true
	for _, r := range grouped[0].Rows {
		t, err := strconv.ParseFloat(r[0], 64)
		must(err, "time as float")
		if t < lastTime {
			sorted = false
		}
		lastTime = t
		n, err := strconv.ParseInt(r[1], 10, 64)
		must(err, "count as int")
		total += n
	}
	report["grouped"] = map[string]interface{}{"columns": grouped[0].Columns, "total": total, "sorted": sorted, "tag": grouped[0].Tag}

	series := simple(ctx, conn, "SELECT start_time AS \"time\", duration_ns / 1e6 AS value, service_name AS metric FROM spans WHERE "+filter+" ORDER BY 1 LIMIT 20")
	var parsed int
	for _, r := range series[0].Rows {
		var ts pgtype.Timestamptz
		must(ts.DecodeText(nil, []byte(r[0])), "timestamptz text "+r[0])
		var v pgtype.Float8
		must(v.DecodeText(nil, []byte(r[1])), "float8 text "+r[1])
		parsed++
	}
	report["series"] = map[string]interface{}{"columns": series[0].Columns, "parsed": parsed}

	// $__unixEpochFilter over an integer epoch column; several statements in one query.
	epoch := simple(ctx, conn, fmt.Sprintf("SELECT 1 AS one; SELECT count(*) AS n FROM (SELECT CAST(extract(epoch from start_time) AS BIGINT) AS ts FROM spans) WHERE ts >= %d AND ts <= %d", mustTime(from).Unix(), mustTime(to).Unix()))
	report["statements"] = len(epoch)
	report["epoch_count"] = epoch[1].Rows[0][0]

	// The extended protocol with binary results, as pgx's own Query does.
	var start time.Time
	var duration int64
	must(conn.QueryRow(ctx, "SELECT start_time, duration_ns FROM spans WHERE service_name = $1 ORDER BY start_time LIMIT 1", "checkout").Scan(&start, &duration), "binary row")
	report["binary_start_year"] = start.UTC().Year()
	report["binary_duration_positive"] = duration > 0

	out, err := json.Marshal(report)
	must(err, "json")
	fmt.Println(string(out))
}

func mustTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	must(err, "time "+s)
	return t
}
