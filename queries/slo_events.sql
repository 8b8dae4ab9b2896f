-- slo_events: per SLO and minute, the requests it counts, from the span rollups
-- (service_rollup_1m), over its window or the last 3 days, whichever is longer (burn rates look 3
-- days back): start_time (the minute), age_ns (how long ago the minute began), the SLO's
-- window_ns, its time slice, requests, and bad: those that spend error budget (is_bad, or for
-- a latency SLO also slower than the threshold, counted in the latency sketch of the good
-- ones: within 0.54 % of the threshold).
--
-- Counting slow requests is additive over rollup rows, so each row's sketch is counted on its
-- own and no sketch is merged; without latency SLOs the sketches are not read at all.
-- {slo_history_seconds} is the longest window any SLO can have: it bounds the scan by a
-- constant, which skips the files of older partitions.
CREATE VIEW slo_events AS
WITH recent AS (
  SELECT
    r."time",
    r.service_name,
    r.spans,
    {rollup_is_bad} AS is_bad,
    r.latency_zero_count,
    r.latency_bucket_index,
    r.latency_bucket_count
  FROM service_rollup_1m r
  WHERE r.span_kind IN ('SERVER', 'CONSUMER') AND NOT r.health_check
    AND r."time" <= now()
    AND r."time" > now() - INTERVAL '{slo_history_seconds} seconds'
),
counts AS (
  SELECT
    "time",
    service_name,
    sum(spans) AS requests,
    sum(CASE WHEN is_bad THEN spans ELSE 0 END) AS errors
  FROM recent
  GROUP BY 1, 2
),
slow AS (
  SELECT
    o.slo_name,
    r."time",
    sum(r.spans - exp_histogram_count_le(
      named_struct(
        'scale', arrow_cast({sketch_scale}, 'Int32'),
        'zero_count', r.latency_zero_count,
        'bucket_index', r.latency_bucket_index,
        'bucket_count', r.latency_bucket_count),
      CAST(o.latency_threshold_ns AS DOUBLE))) AS slow
  FROM slo_objectives o
  JOIN recent r ON r.service_name = o.service_name
  WHERE o.indicator = 'latency' AND NOT r.is_bad
  GROUP BY 1, 2
)
SELECT
    o.slo_name,
    c."time" AS start_time,
    CAST(now() AS BIGINT) - CAST(c."time" AS BIGINT) AS age_ns,
    o.window_ns,
    CAST(c."time" AS BIGINT) / o.timeslice_ns AS slice,
    c.requests,
    c.errors + COALESCE(s.slow, 0) AS bad
  FROM slo_objectives o
  JOIN counts c ON c.service_name = o.service_name
  LEFT JOIN slow s ON s.slo_name = o.slo_name AND s."time" = c."time"
  WHERE CAST(c."time" AS BIGINT) > CAST(now() AS BIGINT) - greatest(o.window_ns, 3 * 86400000000000)
