-- server_duration_increases: the requests a service served, from its server-duration histogram
-- metrics (http.server.request.duration, rpc.server.duration, rpc.server.call.duration), one
-- row per data point: which bucket counts that point adds, and how many requests that is.
--
-- Delta points add what they carry. A cumulative point adds its increase over the previous
-- point of the same series (service, instance, metric, attributes); after a reset (start time
-- changed, or any bucket went down) it adds its whole counts, which count from its start time.
-- The first stored point of a cumulative series adds its whole counts only when the series
-- started after the oldest point still stored; otherwise it is the baseline and adds nothing
-- (what it carries happened before the data kept, e.g. before retention cut it).
--
-- is_bad: HTTP status >= 500, gRPC status 2, 4, 12, 13, 14 or 15, or an error.type attribute.
-- bounds: the bucket bounds in the metric's unit; ms_per_unit converts them (the unit is s or
-- ms).
CREATE VIEW server_duration_increases AS
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
    bucket_counts,
    explicit_bounds,
    lag(start_time) OVER series AS previous_start_time,
    lag(bucket_counts) OVER series AS previous_bucket_counts
  FROM histogram_points
  WHERE metric_name IN ('http.server.request.duration', 'rpc.server.duration', 'rpc.server.call.duration')
  WINDOW series AS (
    PARTITION BY service_name, service_instance_id, metric_name, attributes ORDER BY "time"
  )
),
increases AS (
  SELECT
    *,
    CASE
      WHEN temporality IS DISTINCT FROM 'cumulative' THEN bucket_counts
      WHEN previous_bucket_counts IS NOT NULL
        THEN CASE WHEN (previous_start_time IS NOT DISTINCT FROM start_time)
                  THEN bucket_delta(bucket_counts, previous_bucket_counts)
                  ELSE bucket_counts END
      WHEN COALESCE(start_time >= (SELECT min("time") FROM histogram_points), false)
        THEN bucket_counts
      ELSE bucket_delta(bucket_counts, bucket_counts)
    END AS increase
  FROM points
)
SELECT
  "time",
  service_name,
  service_instance_id,
  metric_name,
  attributes,
  bucket_total(increase) AS requests,
  increase AS bucket_counts,
  explicit_bounds AS bounds,
  CASE WHEN metric_unit = 's' THEN 1000.0 ELSE 1.0 END AS ms_per_unit,
  COALESCE(json_get_int(attributes, 'http.response.status_code') >= 500, false)
    OR COALESCE(json_get_int(attributes, 'rpc.grpc.status_code') IN (2, 4, 12, 13, 14, 15), false)
    OR json_get_str(attributes, 'error.type') IS NOT NULL AS is_bad
FROM increases
