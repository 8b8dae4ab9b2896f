-- deploy_impact: every deploy, the hour before it served by the previous version against the
-- hour after it served by the new one (so a rolling deploy compares versions, not a mix).
--
-- Errors: the bad-request ratios (is_bad) and a two-proportion z-test (pooled; p-value
-- two-sided, 1 when neither hour had a bad request).
-- Latency: p50 and p95 of each hour, and a Mann-Whitney rank test (normal approximation with
-- average ranks for ties, no tie correction of the variance; p-value two-sided). The effect
-- size is the rank-biserial correlation: P(a request after is slower than one before) minus
-- P(it is faster), from -1 to 1.
-- verdict: 'regressed' when the error ratio rose or latency got slower (effect above 0.1)
-- with p < 0.01; 'improved' for the opposite without a regression; 'no change' otherwise;
-- 'too few requests' below 20 requests in either hour.
CREATE VIEW deploy_impact AS
WITH samples AS (
  SELECT
    d.service_name,
    d.previous_version,
    d.version,
    d.deployed_at,
    CASE WHEN r.service_version = d.version THEN 1 ELSE 0 END AS after,
    r.duration_ns,
    CASE WHEN r.is_bad THEN 1 ELSE 0 END AS bad
  FROM deploys d
  JOIN server_requests r ON r.service_name = d.service_name
  WHERE (r.service_version = d.previous_version
         AND r.start_time >= d.deployed_at - INTERVAL '1 hour' AND r.start_time < d.deployed_at)
     OR (r.service_version = d.version
         AND r.start_time >= d.deployed_at AND r.start_time < d.deployed_at + INTERVAL '1 hour')
),
ranked AS (
  SELECT
    *,
    rank() OVER (PARTITION BY service_name, version ORDER BY duration_ns) AS low_rank,
    count(*) OVER (PARTITION BY service_name, version, duration_ns) AS ties
  FROM samples
),
hours AS (
  SELECT
    service_name,
    previous_version,
    version,
    deployed_at,
    CAST(sum(1 - after) AS DOUBLE) AS n1,
    CAST(sum(after) AS DOUBLE) AS n2,
    CAST(sum(CASE WHEN after = 0 THEN bad ELSE 0 END) AS DOUBLE) AS bad1,
    CAST(sum(CASE WHEN after = 1 THEN bad ELSE 0 END) AS DOUBLE) AS bad2,
    sum(CASE WHEN after = 1 THEN low_rank + (ties - 1) / 2.0 ELSE 0 END) AS rank_sum2,
    percentile_cont(0.5) WITHIN GROUP (ORDER BY CASE WHEN after = 0 THEN duration_ns END) / 1e6 AS p50_before_ms,
    percentile_cont(0.5) WITHIN GROUP (ORDER BY CASE WHEN after = 1 THEN duration_ns END) / 1e6 AS p50_after_ms,
    percentile_cont(0.95) WITHIN GROUP (ORDER BY CASE WHEN after = 0 THEN duration_ns END) / 1e6 AS p95_before_ms,
    percentile_cont(0.95) WITHIN GROUP (ORDER BY CASE WHEN after = 1 THEN duration_ns END) / 1e6 AS p95_after_ms
  FROM ranked
  GROUP BY 1, 2, 3, 4
),
tests AS (
  SELECT
    *,
    bad1 / n1 AS error_ratio_before,
    bad2 / n2 AS error_ratio_after,
    CASE
      WHEN n1 = 0 OR n2 = 0 OR bad1 + bad2 = 0 OR bad1 + bad2 = n1 + n2 THEN NULL
      ELSE (bad2 / n2 - bad1 / n1) / sqrt(
        (bad1 + bad2) / (n1 + n2) * (1 - (bad1 + bad2) / (n1 + n2)) * (1 / n1 + 1 / n2))
    END AS error_z,
    rank_sum2 - n2 * (n2 + 1) / 2 AS u2
  FROM hours
),
scored AS (
  SELECT
    *,
    COALESCE(2 * normal_cdf(-abs(error_z)), 1.0) AS error_p_value,
    CASE WHEN n1 > 0 AND n2 > 0 THEN 2 * u2 / (n1 * n2) - 1 END AS latency_effect,
    CASE WHEN n1 > 0 AND n2 > 0 THEN
      2 * normal_cdf(-abs(u2 - n1 * n2 / 2) / sqrt(n1 * n2 * (n1 + n2 + 1) / 12))
    END AS latency_p_value
  FROM tests
)
SELECT
  service_name,
  previous_version,
  version,
  deployed_at,
  CAST(n1 AS BIGINT) AS requests_before,
  CAST(n2 AS BIGINT) AS requests_after,
  error_ratio_before,
  error_ratio_after,
  error_p_value,
  p50_before_ms,
  p50_after_ms,
  p95_before_ms,
  p95_after_ms,
  latency_effect,
  latency_p_value,
  CASE
    WHEN n1 < 20 OR n2 < 20 THEN 'too few requests'
    WHEN (error_p_value < 0.01 AND error_ratio_after > error_ratio_before)
      OR (latency_p_value < 0.01 AND latency_effect > 0.1) THEN 'regressed'
    WHEN (error_p_value < 0.01 AND error_ratio_after < error_ratio_before)
      OR (latency_p_value < 0.01 AND latency_effect < -0.1) THEN 'improved'
    ELSE 'no change'
  END AS verdict
FROM scored
