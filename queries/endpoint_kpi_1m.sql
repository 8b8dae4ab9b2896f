-- endpoint_kpi_1m: service_kpi_1m per service, endpoint and minute (same columns, plus
-- endpoint; same definitions).
CREATE VIEW endpoint_kpi_1m AS
SELECT
  date_bin(INTERVAL '1 minute', r.start_time, TIMESTAMP '1970-01-01T00:00:00Z') AS "time",
  r.service_name,
  r.endpoint,
  count(*) AS requests,
  sum(CASE WHEN r.is_bad THEN 1 ELSE 0 END) AS errors,
  1.0 - CAST(sum(CASE WHEN r.is_bad THEN 1 ELSE 0 END) AS DOUBLE) / count(*) AS availability,
  percentile_cont(0.5) WITHIN GROUP (ORDER BY r.duration_ns) / 1e6 AS p50_ms,
  percentile_cont(0.95) WITHIN GROUP (ORDER BY r.duration_ns) / 1e6 AS p95_ms,
  percentile_cont(0.99) WITHIN GROUP (ORDER BY r.duration_ns) / 1e6 AS p99_ms,
  (
    sum(CASE WHEN r.satisfied THEN 1.0 ELSE 0.0 END)
    + 0.5 * sum(CASE WHEN r.tolerating THEN 1.0 ELSE 0.0 END)
  ) / count(*) AS apdex,
  count(*) / 60.0 AS rate_per_second
FROM server_requests_apdex r
GROUP BY 1, 2, 3
