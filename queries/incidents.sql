-- incidents: runs of breaching minutes of an SLO (slo_minutes), merged when no more than the
-- SLO file's incident_merge_gap_minutes lie between them (gaps and islands). incident_id:
-- "<slo>@<first minute as YYYYMMDDTHHMMZ>", stable as history grows. started_at: the
-- first breaching minute; detected_at: the first minute of the run at whose end the page alert
-- held (NULL if it never did); resolved_at: the end of the last breaching minute, NULL while
-- the incident may still go on (that end is less than the merge gap ago).
CREATE VIEW incidents AS
WITH breaching AS (
  SELECT
    *,
    lag("time") OVER (PARTITION BY slo_name ORDER BY "time") AS previous
  FROM slo_minutes
  WHERE breaching
),
runs AS (
  SELECT
    *,
    sum(CASE
          WHEN previous IS NULL
            OR CAST("time" AS BIGINT) - CAST(previous AS BIGINT) > 60000000000 * ({incident_merge_gap_minutes} + 1)
          THEN 1 ELSE 0
        END) OVER (PARTITION BY slo_name ORDER BY "time" ROWS UNBOUNDED PRECEDING) AS incident
  FROM breaching
)
SELECT
  slo_name || '@' || to_char(min("time"), '%Y%m%dT%H%MZ') AS incident_id,
  slo_name,
  service_name,
  incident AS incident_number,
  min("time") AS started_at,
  min(CASE WHEN page THEN "time" END) AS detected_at,
  CASE
    WHEN CAST(max("time") AS BIGINT) + 60000000000 * ({incident_merge_gap_minutes} + 1) > CAST(now() AS BIGINT)
      THEN NULL
    ELSE max("time") + INTERVAL '1 minute'
  END AS resolved_at,
  count(*) AS breaching_minutes,
  sum(requests) AS requests,
  sum(bad_requests) AS bad_requests
FROM runs
GROUP BY slo_name, service_name, incident
