-- slo_events: per SLO and minute, the requests it counts, from the span rollups
-- (service_rollup_1m), over its window or the last 3 days, whichever is longer (burn rates look 3
-- days back): start_time (the minute), age_ns (how long ago the minute began), the SLO's
-- window_ns, its time slice, requests, and bad: those that spend error budget (is_bad, or for
-- a latency SLO also slower than the threshold, counted in the latency sketch of the good
-- ones: within 0.54 % of the threshold).
CREATE VIEW slo_events AS
WITH m AS (
  SELECT
    r."time",
    r.service_name,
    sum(r.spans) AS requests,
    sum(CASE WHEN {rollup_is_bad} THEN r.spans ELSE 0 END) AS errors,
    latency_sketch(r.latency_bucket_index, r.latency_bucket_count, r.latency_zero_count)
      FILTER (WHERE NOT ({rollup_is_bad})) AS good_latency
  FROM service_rollup_1m r
  WHERE r.span_kind IN ('SERVER', 'CONSUMER') AND NOT r.health_check
    AND r."time" <= now()
    AND CAST(r."time" AS BIGINT) > CAST(now() AS BIGINT)
      - (SELECT greatest(max(window_ns), 3 * 86400000000000) FROM slo_objectives)
  GROUP BY 1, 2
)
SELECT
    o.slo_name,
    m."time" AS start_time,
    CAST(now() AS BIGINT) - CAST(m."time" AS BIGINT) AS age_ns,
    o.window_ns,
    CAST(m."time" AS BIGINT) / o.timeslice_ns AS slice,
    m.requests,
    m.errors + CASE
      WHEN o.indicator = 'latency' THEN COALESCE(
        exp_histogram_count(m.good_latency)
          - exp_histogram_count_le(m.good_latency, CAST(o.latency_threshold_ns AS DOUBLE)),
        0)
      ELSE 0
    END AS bad
  FROM slo_objectives o
  JOIN m ON m.service_name = o.service_name
  WHERE CAST(m."time" AS BIGINT) > CAST(now() AS BIGINT) - greatest(o.window_ns, 3 * 86400000000000)
