-- incident_stats: per SLO (and so per service), over its window: how many incidents, and in
-- minutes MTTD (mean of detected_at - started_at, over detected incidents), MTTR (mean of
-- resolved_at - started_at, over resolved ones) and MTBF (mean time from one incident's
-- resolution to the next one's start).
CREATE VIEW incident_stats AS
WITH i AS (
  SELECT
    *,
    lead(started_at) OVER (PARTITION BY slo_name ORDER BY started_at) AS next_started_at
  FROM incidents
)
SELECT
  slo_name,
  service_name,
  count(*) AS incidents,
  avg(CAST(detected_at AS BIGINT) - CAST(started_at AS BIGINT)) / 60e9 AS mttd_minutes,
  avg(CAST(resolved_at AS BIGINT) - CAST(started_at AS BIGINT)) / 60e9 AS mttr_minutes,
  avg(CAST(next_started_at AS BIGINT) - CAST(resolved_at AS BIGINT)) / 60e9 AS mtbf_minutes
FROM i
GROUP BY slo_name, service_name
