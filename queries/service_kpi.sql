-- service_kpi_1m, service_kpi_1h: per service and minute (hour), the RED signals and their
-- SLIs, read from the service rollups (service_rollup_1m, service_rollup_1h) so that a range of
-- weeks reads a few rows per service and bucket instead of every span.
--
-- requests: server requests (SERVER and CONSUMER spans, health checks excluded) that started
-- in the bucket; errors: those that went bad, as server_requests.is_bad defines it (status
-- class 'error', and 'throttled' with --kpi-throttled-is-bad);
-- availability = 1 - errors / requests;
-- p50_ms, p95_ms, p99_ms: percentiles of the duration as percentile_cont computes them over
-- the rollups' latency sketches: within 0.54 % of the exact value;
-- apdex = (satisfied + tolerating / 2) / requests, good requests counted against the
-- service's threshold T (kpi_apdex_thresholds, else --kpi-apdex-threshold-ms) in the sketch;
-- rate_per_second = requests / bucket seconds. Buckets without requests have no row.
CREATE VIEW service_kpi_{width} AS
WITH g AS (
  SELECT
    r."time",
    r.service_name,
    sum(r.spans) AS requests,
    sum(CASE WHEN {rollup_is_bad} THEN r.spans ELSE 0 END) AS errors,
    latency_sketch(r.latency_bucket_index, r.latency_bucket_count, r.latency_zero_count)
      AS latency,
    latency_sketch(r.latency_bucket_index, r.latency_bucket_count, r.latency_zero_count)
      FILTER (WHERE NOT ({rollup_is_bad})) AS good_latency
  FROM service_rollup_{width} r
  WHERE r.span_kind IN ('SERVER', 'CONSUMER') AND NOT r.health_check
  GROUP BY 1, 2
)
SELECT
  g."time",
  g.service_name,
  g.requests,
  g.errors,
  1.0 - CAST(g.errors AS DOUBLE) / g.requests AS availability,
  exp_histogram_percentile(0.5, g.latency) / 1e6 AS p50_ms,
  exp_histogram_percentile(0.95, g.latency) / 1e6 AS p95_ms,
  exp_histogram_percentile(0.99, g.latency) / 1e6 AS p99_ms,
  COALESCE(
    0.5 * exp_histogram_count_le(g.good_latency, COALESCE(a.threshold_ns, {default_apdex_threshold_ns}))
    + 0.5 * exp_histogram_count_le(g.good_latency, 4 * COALESCE(a.threshold_ns, {default_apdex_threshold_ns})),
    0.0
  ) / g.requests AS apdex,
  g.requests / {width_seconds}.0 AS rate_per_second
FROM g
LEFT JOIN kpi_apdex_thresholds a ON a.service_name = g.service_name
