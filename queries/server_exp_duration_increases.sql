-- server_exp_duration_increases: like server_duration_increases, for server-duration metrics
-- recorded as exponential histograms (http.server.request.duration, rpc.server.duration,
-- rpc.server.call.duration): one row per data point with the histogram it adds and how many
-- requests that is.
--
-- Delta points add what they carry. A cumulative point adds its increase over the previous
-- point of the same series (exp_histogram_delta brings both to a common scale); after a reset
-- (start time changed, or a count went down) it adds its whole histogram. The first stored
-- point of a cumulative series counts only when the series started after the oldest point
-- still stored; otherwise it is the baseline and adds nothing.
--
-- histogram: an exp_histogram struct in the metric's unit; ms_per_unit converts it (s or ms).
-- is_bad: HTTP status >= 500, gRPC status 2, 4, 12, 13, 14 or 15, or an error.type attribute.
CREATE VIEW server_exp_duration_increases AS
WITH points AS (
  SELECT
    "time",
    start_time,
    service_name,
    service_instance_id,
    metric_name,
    metric_unit,
    attributes,
    temporality,
    exp_histogram(scale, zero_count, zero_threshold, positive_offset, positive_bucket_counts,
                  negative_offset, negative_bucket_counts) AS histogram
  FROM exp_histogram_points
  WHERE metric_name IN ('http.server.request.duration', 'rpc.server.duration', 'rpc.server.call.duration')
),
series AS (
  SELECT
    *,
    lag(start_time) OVER w AS previous_start_time,
    lag(histogram) OVER w AS previous_histogram
  FROM points
  WINDOW w AS (
    PARTITION BY service_name, service_instance_id, metric_name, attributes ORDER BY "time"
  )
),
increases AS (
  SELECT
    *,
    CASE
      WHEN temporality IS DISTINCT FROM 'cumulative' THEN histogram
      WHEN previous_histogram IS NOT NULL
        THEN CASE WHEN (previous_start_time IS NOT DISTINCT FROM start_time)
                  THEN exp_histogram_delta(histogram, previous_histogram)
                  ELSE histogram END
      WHEN COALESCE(start_time >= (SELECT min("time") FROM exp_histogram_points), false)
        THEN histogram
      ELSE exp_histogram_delta(histogram, histogram)
    END AS increase
  FROM series
)
SELECT
  "time",
  service_name,
  service_instance_id,
  metric_name,
  attributes,
  exp_histogram_count(increase) AS requests,
  increase AS histogram,
  CASE WHEN metric_unit = 's' THEN 1000.0 ELSE 1.0 END AS ms_per_unit,
  COALESCE(json_get_int(attributes, 'http.response.status_code') >= 500, false)
    OR COALESCE(json_get_int(attributes, 'rpc.grpc.status_code') IN (2, 4, 12, 13, 14, 15), false)
    OR json_get_str(attributes, 'error.type') IS NOT NULL AS is_bad
FROM increases
