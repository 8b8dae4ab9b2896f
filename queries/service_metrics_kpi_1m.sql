-- service_metrics_kpi_1m: per service, server-duration metric and minute, the RED signals
-- from histogram metrics (server_duration_increases), for services whose spans are not sent.
--
-- requests and errors: the requests the minute's points add (errors: those of bad series);
-- availability = 1 - errors / requests; p50_ms, p95_ms, p99_ms: histogram_quantile over the
-- minute's summed buckets (Prometheus rules; NULL when the points' bucket bounds differ);
-- rate_per_second = requests / 60. Minutes without points have no row.
CREATE VIEW service_metrics_kpi_1m AS
SELECT
  date_bin(INTERVAL '1 minute', "time", TIMESTAMP '1970-01-01T00:00:00Z') AS "time",
  service_name,
  metric_name,
  sum(requests) AS requests,
  sum(CASE WHEN is_bad THEN requests ELSE 0 END) AS errors,
  1.0 - CAST(sum(CASE WHEN is_bad THEN requests ELSE 0 END) AS DOUBLE) / sum(requests)
    AS availability,
  CASE WHEN count(DISTINCT array_to_string(bounds, ',')) = 1
    THEN histogram_quantile(0.5, first_value(bounds), bucket_sum(bucket_counts)) * max(ms_per_unit)
  END
    AS p50_ms,
  CASE WHEN count(DISTINCT array_to_string(bounds, ',')) = 1
    THEN histogram_quantile(0.95, first_value(bounds), bucket_sum(bucket_counts)) * max(ms_per_unit)
  END
    AS p95_ms,
  CASE WHEN count(DISTINCT array_to_string(bounds, ',')) = 1
    THEN histogram_quantile(0.99, first_value(bounds), bucket_sum(bucket_counts)) * max(ms_per_unit)
  END
    AS p99_ms,
  sum(requests) / 60.0 AS rate_per_second
FROM server_duration_increases
GROUP BY 1, 2, 3
