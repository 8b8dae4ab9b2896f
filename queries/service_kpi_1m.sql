-- service_kpi_1m: per service and minute, the RED signals and their SLIs over
-- server_requests.
--
-- requests: requests that started in the minute; errors: those with is_bad;
-- availability = 1 - errors / requests; p50_ms, p95_ms, p99_ms: exact percentiles of the
-- duration (linear interpolation between closest ranks, as PostgreSQL's percentile_cont; the
-- interpolation weight is quantised to 1e-6);
-- apdex = (satisfied + tolerating / 2) / requests (classes from server_requests_apdex);
-- rate_per_second = requests / 60. Minutes without requests have no row.
CREATE VIEW service_kpi_1m AS
SELECT
  date_bin(INTERVAL '1 minute', r.start_time, TIMESTAMP '1970-01-01T00:00:00Z') AS "time",
  r.service_name,
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
GROUP BY 1, 2
