-- service_metrics_kpi_1m: per service, server-duration metric and minute, the RED signals
-- from histogram metrics, for services whose spans are not sent. Explicit-bucket points come
-- from server_duration_increases, exponential ones from server_exp_duration_increases; a
-- service that sends both kinds for one metric gets one row per kind and minute.
--
-- requests and errors: the requests the minute's points add (errors: those of bad series);
-- availability = 1 - errors / requests; p50_ms, p95_ms, p99_ms: the quantiles of the minute's
-- summed buckets (histogram_quantile, NULL when the explicit points' bounds differ;
-- exp_histogram_quantile over exp_histogram_merge, which merges any scales);
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
UNION ALL
SELECT
  date_bin(INTERVAL '1 minute', "time", TIMESTAMP '1970-01-01T00:00:00Z') AS "time",
  service_name,
  metric_name,
  sum(requests) AS requests,
  sum(CASE WHEN is_bad THEN requests ELSE 0 END) AS errors,
  1.0 - CAST(sum(CASE WHEN is_bad THEN requests ELSE 0 END) AS DOUBLE) / sum(requests)
    AS availability,
  exp_histogram_quantile(0.5, exp_histogram_merge(histogram)) * max(ms_per_unit) AS p50_ms,
  exp_histogram_quantile(0.95, exp_histogram_merge(histogram)) * max(ms_per_unit) AS p95_ms,
  exp_histogram_quantile(0.99, exp_histogram_merge(histogram)) * max(ms_per_unit) AS p99_ms,
  sum(requests) / 60.0 AS rate_per_second
FROM server_exp_duration_increases
GROUP BY 1, 2, 3
