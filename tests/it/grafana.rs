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

/// Expands the macros and variables as Grafana does, for the range [from, to] (RFC 3339).
pub fn expand(sql: &str, from: &str, to: &str, vars: &[(&str, &str)]) -> String {
    let mut out = String::new();
    let mut rest = sql;
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
        for target in panel["targets"].as_array().unwrap() {
            let sql = expand(target["rawSql"].as_str().unwrap(), from, to, vars);
            let rows = psql(s, &sql);
            assert!(rows.len() >= 2, "{title}: no rows from {sql}");
            if target["format"] == "time_series" {
                assert_eq!(rows[0][0], "time", "{title}: {sql}");
                for row in &rows[1..] {
                    for value in &row[1..] {
                        assert!(
                            value.is_empty() || value.parse::<f64>().is_ok(),
                            "{title}: {value:?} is not a number in {row:?}"
                        );
                    }
                }
            }
        }
    }
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
