-- slo_events: one row per request an SLO counts, over its window or the last 3 days, whichever
-- is longer (burn rates look 3 days back): age_ns (how long ago it started), the SLO's
-- window_ns, its time slice, and bad (1 when the request spends error budget: is_bad, or
-- slower than the threshold of a latency SLO).
CREATE VIEW slo_events AS
SELECT
    o.slo_name,
    r.start_time,
    CAST(now() AS BIGINT) - CAST(r.start_time AS BIGINT) AS age_ns,
    o.window_ns,
    CAST(r.start_time AS BIGINT) / o.timeslice_ns AS slice,
    CASE
      WHEN r.is_bad THEN 1
      WHEN o.indicator = 'latency' AND r.duration_ns > o.latency_threshold_ns THEN 1
      ELSE 0
    END AS bad
  FROM slo_objectives o
  JOIN server_requests r ON r.service_name = o.service_name
  WHERE r.start_time <= now()
    AND CAST(r.start_time AS BIGINT) > CAST(now() AS BIGINT)
      - greatest(o.window_ns, 3 * 86400000000000)
