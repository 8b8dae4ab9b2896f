-- endpoint_kpi_1m, endpoint_kpi_1h: service_kpi_1m (service_kpi_1h) per service, endpoint and
-- minute (hour): the same columns, plus endpoint (as server_requests defines it); the same
-- definitions.
CREATE VIEW endpoint_kpi_{width} AS
WITH g AS (
  SELECT
    r."time",
    r.service_name,
    r.endpoint,
    sum(r.spans) AS requests,
    sum(CASE WHEN {rollup_is_bad} THEN r.spans ELSE 0 END) AS errors,
    latency_sketch(r.latency_bucket_index, r.latency_bucket_count, r.latency_zero_count)
      AS latency,
    latency_sketch(r.latency_bucket_index, r.latency_bucket_count, r.latency_zero_count)
      FILTER (WHERE NOT ({rollup_is_bad})) AS good_latency
  FROM span_rollup_{width} r
  WHERE r.span_kind IN ('SERVER', 'CONSUMER') AND NOT r.health_check
  GROUP BY 1, 2, 3
)
SELECT
  g."time",
  g.service_name,
  g.endpoint,
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
