//! Shipped Grafana dashboards against a running server: every variable's and panel's SQL is
//! expanded as Grafana's PostgreSQL data source expands it (`pkg/tsdb/grafana-postgresql-
//! datasource/macros.go`: `$__timeFilter`, `$__timeGroup`, `$__timeGroupAlias`, `$__timeFrom`,
//! `$__timeTo`, then `$var` / `${var}`), run with psql, and checked for the shape its panel
//! draws: a `time` column and numbers for time series, rows for tables.

use std::process::Command;

use serde_json::Value;

use crate::TestServer;

/// Seconds of a Grafana interval: `30s`, `5m`, `1h`, `1d`.
fn interval_seconds(text: &str) -> u64 {
    let text = text.trim().trim_matches('\'');
    let (number, unit) = text.split_at(text.len() - 1);
    let n: u64 = number
        .parse()
        .unwrap_or_else(|_| panic!("interval {text:?}"));
    n * match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        other => panic!("interval unit {other:?}"),
    }
}

/// The arguments of the macro call whose `(` is at `open`, and the index after its `)`.
fn arguments(sql: &str, open: usize) -> (Vec<String>, usize) {
    let mut depth = 0;
    let mut args = vec![String::new()];
    for (i, c) in sql[open..].char_indices() {
        match c {
            '(' => {
                depth += 1;
                if depth == 1 {
                    continue;
                }
            }
            ')' => {
                depth -= 1;
                if depth == 0 {
                    let args = args.into_iter().map(|a| a.trim().to_owned()).collect();
                    return (args, open + i + 1);
                }
            }
            ',' if depth == 1 => {
                args.push(String::new());
                continue;
            }
            _ => {}
        }
        args.last_mut().unwrap().push(c);
    }
    panic!("unclosed macro call in {sql:?}")
}

/// `$__interval` for the range, as Grafana's front end works it out before the query leaves
/// (`rangeutil.calculateInterval`: the range over the panel's data points, 1000 here, rounded
/// by `roundInterval`), for intervals of a second and more.
fn grafana_interval(from: &str, to: &str) -> String {
    let parse = |t: &str| chrono::DateTime::parse_from_rfc3339(t).expect("RFC 3339 range");
    let ms = (parse(to) - parse(from)).num_milliseconds() / 1000;
    let steps: [(i64, &str); 20] = [
        (1_500, "1s"),
        (3_500, "2s"),
        (7_500, "5s"),
        (12_500, "10s"),
        (17_500, "15s"),
        (25_000, "20s"),
        (45_000, "30s"),
        (90_000, "1m"),
        (210_000, "2m"),
        (450_000, "5m"),
        (750_000, "10m"),
        (1_050_000, "15m"),
        (1_500_000, "20m"),
        (2_700_000, "30m"),
        (5_400_000, "1h"),
        (9_000_000, "2h"),
        (16_200_000, "3h"),
        (27_000_000, "6h"),
        (86_400_000, "12h"),
        (604_800_000, "1d"),
    ];
    steps
        .iter()
        .find(|(limit, _)| ms < *limit)
        .map_or("7d", |(_, v)| v)
        .to_owned()
}

/// Expands the macros and variables as Grafana does, for the range [from, to] (RFC 3339).
pub fn expand(sql: &str, from: &str, to: &str, vars: &[(&str, &str)]) -> String {
    let interval = grafana_interval(from, to);
    let interval_ms = (interval_seconds(&interval) * 1000).to_string();
    let sql = sql
        .replace("$__interval_ms", &interval_ms)
        .replace("$__interval", &interval);
    let mut out = String::new();
    let mut rest = sql.as_str();
    while let Some(at) = rest.find("$__") {
        out.push_str(&rest[..at]);
        let name_end = rest[at + 3..]
            .find(|c: char| !c.is_ascii_alphanumeric())
            .map_or(rest.len(), |i| at + 3 + i);
        let name = &rest[at + 3..name_end];
        let (args, end) = if rest[name_end..].starts_with('(') {
            arguments(rest, name_end)
        } else {
            (Vec::new(), name_end)
        };
        let group = |args: &[String]| {
            let s = interval_seconds(&args[1]);
            format!("floor(extract(epoch from {})/{s})*{s}", args[0])
        };
        out.push_str(&match name {
            "timeFilter" => format!("{} BETWEEN '{from}' AND '{to}'", args[0]),
            "timeFrom" => format!("'{from}'"),
            "timeTo" => format!("'{to}'"),
            "timeGroup" => group(&args),
            "timeGroupAlias" => format!("{} AS \"time\"", group(&args)),
            other => panic!("macro $__{other} is not expanded by this test"),
        });
        rest = &rest[end..];
    }
    out.push_str(rest);
    for (name, value) in vars {
        out = out
            .replace(&format!("${{{name}}}"), value)
            .replace(&format!("${name}"), value);
    }
    assert!(!out.contains('$'), "unexpanded variable in {out}");
    out
}

/// Runs `sql` with psql; the header and the rows, as CSV fields.
fn psql(s: &TestServer, sql: &str) -> Vec<Vec<String>> {
    let addr = s.running.pg_addr;
    let out = Command::new("psql")
        .args(["-X", "-q", "--csv", "-w", "-v", "ON_ERROR_STOP=1"])
        .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .args(["-U", "grafana", "-d", "headroom", "-c", sql])
        .env("PGCONNECT_TIMEOUT", "10")
        .env("PGSSLMODE", "disable")
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "{sql}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    csv_rows(&String::from_utf8_lossy(&out.stdout))
}

/// CSV as psql writes it (quoted fields may hold commas, quotes doubled).
fn csv_rows(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => row.push(std::mem::take(&mut field)),
            ('\n', false) => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            _ => field.push(c),
        }
    }
    rows
}

/// Checks every variable and panel of the dashboard in `dashboards/headroom/{file}`, with the
/// variables set to `vars` (each must be among its query's values), over [from, to].
pub fn check_dashboard(s: &TestServer, file: &str, vars: &[(&str, &str)], from: &str, to: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("dashboards/headroom")
        .join(file);
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if variable["type"] != "query" {
            continue;
        }
        let name = variable["name"].as_str().unwrap();
        let sql = expand(variable["query"].as_str().unwrap(), from, to, vars);
        let rows = psql(s, &sql);
        let values: Vec<&str> = rows[1..].iter().map(|r| r[0].as_str()).collect();
        let wanted = vars.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
        assert!(
            wanted.is_some_and(|w| values.contains(&w)),
            "variable {name}: {wanted:?} not among {values:?}"
        );
    }
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(!panels.is_empty());
    for panel in panels {
        let title = panel["title"].as_str().unwrap();
        assert!(
            panel["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{title}: no description"
        );
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        let mut frames = Vec::new();
        for target in panel["targets"].as_array().unwrap() {
            let sql = expand(target["rawSql"].as_str().unwrap(), from, to, vars);
            let rows = psql(s, &sql);
            assert!(rows.len() >= 2, "{title}: no rows from {sql}");
            if target["format"] == "time_series" {
                assert_eq!(rows[0][0], "time", "{title}: {sql}");
                // A `metric` column names the series (Grafana's long format); the rest are values.
                for row in &rows[1..] {
                    for (name, value) in rows[0].iter().zip(row).skip(1) {
                        assert!(
                            name == "metric" || value.is_empty() || value.parse::<f64>().is_ok(),
                            "{title}: {value:?} is not a number in {row:?}"
                        );
                    }
                }
            }
            frames.push(rows);
        }
        if panel["type"] == "nodeGraph" {
            check_node_graph(title, &frames);
        }
    }
}

/// The node graph panel's frames (Grafana's data API for it): a nodes frame with `id`,
/// `title`, numeric `mainstat` and `arc__*` fields that add up to 1, and an edges frame (the
/// one with `source`) whose `source` and `target` are node ids.
fn check_node_graph(title: &str, frames: &[Vec<Vec<String>>]) {
    let column = |frame: &Vec<Vec<String>>, name: &str| -> Vec<String> {
        let i = frame[0].iter().position(|c| c == name);
        let i = i.unwrap_or_else(|| panic!("{title}: no {name} field in {:?}", frame[0]));
        frame[1..].iter().map(|row| row[i].clone()).collect()
    };
    let (edges, nodes): (Vec<_>, Vec<_>) = frames
        .iter()
        .partition(|f| f[0].iter().any(|c| c == "source"));
    assert_eq!(
        (nodes.len(), edges.len()),
        (1, 1),
        "{title}: a nodes and an edges frame"
    );
    let (nodes, edges) = (nodes[0], edges[0]);
    let ids = column(nodes, "id");
    assert_eq!(ids, column(nodes, "title"), "{title}");
    for v in column(nodes, "mainstat")
        .into_iter()
        .chain(column(edges, "mainstat"))
    {
        assert!(v.parse::<f64>().is_ok(), "{title}: mainstat {v:?}");
    }
    let arcs: Vec<usize> = (0..nodes[0].len())
        .filter(|&i| nodes[0][i].starts_with("arc__"))
        .collect();
    assert!(!arcs.is_empty(), "{title}: no arc__ fields");
    for row in &nodes[1..] {
        let sum: f64 = arcs.iter().map(|&i| row[i].parse::<f64>().unwrap()).sum();
        assert!(
            (sum - 1.0).abs() < 1e-6,
            "{title}: arcs of {row:?} add up to {sum}"
        );
    }
    for end in column(edges, "source")
        .into_iter()
        .chain(column(edges, "target"))
    {
        assert!(
            ids.contains(&end),
            "{title}: edge end {end:?} is not a node"
        );
    }
    assert!(
        column(edges, "id").iter().all(|id| !id.is_empty()),
        "{title}"
    );
}

#[test]
fn macros_expand_as_grafana_expands_them() {
    let sql = "SELECT $__timeGroupAlias(start_time, '5m'), count(*) FROM t \
               WHERE $__timeFilter(start_time) AND s = '$service' AND x > $__timeFrom() \
               AND y < ${service}";
    assert_eq!(
        expand(
            sql,
            "2026-01-01T00:00:00Z",
            "2026-01-02T00:00:00Z",
            &[("service", "shop")]
        ),
        "SELECT floor(extract(epoch from start_time)/300)*300 AS \"time\", count(*) FROM t \
         WHERE start_time BETWEEN '2026-01-01T00:00:00Z' AND '2026-01-02T00:00:00Z' \
         AND s = 'shop' AND x > '2026-01-01T00:00:00Z' AND y < shop"
    );
    assert_eq!(
        csv_rows("a,b\n\"x, \"\"y\"\"\",2\n"),
        vec![vec!["a", "b"], vec!["x, \"y\"", "2"]]
    );
}

/// The Service overview dashboard over a second of the simulated shop's traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_overview_panels_get_rows() {
    let s = crate::server_with_traffic(|_| {}).await;
    let now = chrono::Utc::now();
    let rfc3339 =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (from, to) = (
        rfc3339(now - chrono::Duration::hours(6)),
        rfc3339(now + chrono::Duration::minutes(1)),
    );
    let server = &s;
    tokio::task::block_in_place(|| {
        check_dashboard(
            server,
            "service-overview.json",
            &[("service", "frontend")],
            &from,
            &to,
        )
    });
    s.stop().await;
}

/// The SLOs and Service graph dashboards over six hours of `headroom demo`'s history, written
/// through OTLP/gRPC: the scenario's trouble shows in the data, and every panel gets rows in
/// its shape over ranges that hold it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slo_and_service_graph_panels_over_demo_history() {
    const MINUTE: i64 = 60_000_000_000;
    // The history: 08:00 to 14:00 UTC of the last weekday that has ended, so that the load
    // (it follows the time of day) and so what pages are the same whenever the test runs.
    let to = crate::last_weekday_at(14);
    let from = to - 360 * MINUTE;
    let (s, scenario, report) = crate::server_with_demo_history(from, to, 10.0, |cfg| {
        cfg.forecast_interval_seconds = 0;
        cfg.scaling_interval_seconds = 0;
    })
    .await;
    assert_eq!(report.minutes, 360, "{report:?}");
    let expected: usize = (0..360)
        .map(|m| scenario.spans_in(from + m * MINUTE, 60.0))
        .sum();
    // Each minute overshoots by less than one trace.
    let spans = usize::try_from(report.spans).unwrap();
    assert!(
        (expected..expected + 360 * 60).contains(&spans),
        "{report:?}, {expected}"
    );

    let ts = crate::rfc3339;
    let [deploy, incident, outage] = &scenario.events[..] else {
        panic!("three events")
    };
    let server = &s;
    tokio::task::block_in_place(|| {
        // The release shows as a new version of checkout, from the deploy on.
        let versions = psql(
            server,
            &format!(
                "SELECT service_version, min(start_time) >= '{}' AS after_deploy FROM spans \
                 WHERE service_name = 'checkout' GROUP BY 1 ORDER BY 1",
                ts(deploy.start_ns)
            ),
        );
        assert_eq!(
            versions[1..],
            [vec!["1.10.0", "t"], vec!["1.9.3", "f"]],
            "{versions:?}"
        );
        // deploy_impact finds the release, and only it, and judges it: slower, not failing more.
        let impact = psql(
            server,
            "SELECT service_name, previous_version, version, verdict, latency_effect > 0.3, \
             latency_p_value < 0.001, error_p_value > 0.01, p50_after_ms > 2 * p50_before_ms \
             FROM deploy_impact",
        );
        assert_eq!(
            impact[1..],
            [vec![
                "checkout",
                "1.9.3",
                "1.10.0",
                "regressed",
                "t",
                "t",
                "t",
                "t"
            ]],
            "{impact:?}"
        );
        // The incident pages payment, and the database failure pages the frontend, each
        // while it lasts; nothing pages before the incident.
        let paged_during = |slo: &str, event: &headroom_loadgen::Event| {
            let rows = psql(
                server,
                &format!(
                    "SELECT count(*) FROM incidents WHERE slo_name = '{slo}' \
                     AND detected_at BETWEEN '{}' AND '{}'",
                    ts(event.start_ns),
                    ts(event.end_ns.unwrap())
                ),
            );
            assert_ne!(rows[1][0], "0", "{slo} not paged during {}", event.name);
        };
        paged_during("payment-availability", incident);
        paged_during("frontend-availability", outage);
        let early = psql(
            server,
            &format!(
                "SELECT count(*) FROM incidents WHERE detected_at < '{}'",
                ts(incident.start_ns)
            ),
        );
        assert_eq!(early[1][0], "0", "a page before the incident");
        // The database failure travels up: product-catalog fails because its PostgreSQL calls
        // did, and the frontend because its calls to product-catalog did.
        let origins = psql(
            server,
            &format!(
                "SELECT client, server, sum(failed_origin_downstream), sum(failed_origin_edge) \
                 FROM service_graph_1m WHERE \"time\" BETWEEN '{}' AND '{}' \
                 AND ((client = 'product-catalog' AND server = 'postgresql') \
                   OR (client = 'frontend' AND server = 'product-catalog')) \
                 GROUP BY 1, 2 ORDER BY 1",
                ts(outage.start_ns),
                ts(outage.end_ns.unwrap() - MINUTE)
            ),
        );
        let count = |r: &Vec<String>, i: usize| r[i].parse::<u64>().unwrap();
        assert_eq!(origins.len(), 3, "{origins:?}");
        assert!(
            count(&origins[1], 2) > 20,
            "frontend -> catalog from downstream: {origins:?}"
        );
        assert!(
            count(&origins[2], 3) > 20,
            "catalog -> postgresql at the edge: {origins:?}"
        );

        check_dashboard(server, "slos.json", &[], &ts(from), &ts(to));
        // The service graph over the hour that holds the database failure.
        check_dashboard(
            server,
            "service-graph.json",
            &[],
            &ts(outage.start_ns - 30 * MINUTE),
            &ts(outage.start_ns + 30 * MINUTE),
        );
    });
    s.stop().await;
}
