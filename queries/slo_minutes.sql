-- slo_minutes: every SLO minute by minute over its window (minutes with requests only):
-- requests, bad_requests, breaching (the minute's bad fraction is above 1 - objective), the
-- burn rates over the 5 min, 30 min, 1 h and 6 h that end with the minute, and page: whether
-- the SRE workbook's page alert (see slo_status) held at the end of the minute.
CREATE VIEW slo_minutes AS
WITH m AS (
  SELECT
    slo_name,
    date_bin(INTERVAL '1 minute', start_time, TIMESTAMP '1970-01-01T00:00:00Z') AS minute,
    sum(requests) AS requests,
    sum(bad) AS bad_requests
  FROM slo_events
  WHERE age_ns < window_ns
  GROUP BY 1, 2
),
rolling AS (
  SELECT
    m.*,
    o.service_name,
    o.objective,
    o.min_requests,
    o.page_alert,
    o.page_burn_rate_1h,
    o.page_burn_rate_6h,
    sum(m.requests) OVER w5 AS requests_5m,
    sum(m.bad_requests) OVER w5 AS bad_5m,
    sum(m.requests) OVER w30 AS requests_30m,
    sum(m.bad_requests) OVER w30 AS bad_30m,
    sum(m.requests) OVER w60 AS requests_1h,
    sum(m.bad_requests) OVER w60 AS bad_1h,
    sum(m.requests) OVER w360 AS requests_6h,
    sum(m.bad_requests) OVER w360 AS bad_6h
  FROM m JOIN slo_objectives o ON o.slo_name = m.slo_name
  WINDOW
    w5 AS (PARTITION BY m.slo_name ORDER BY m.minute
           RANGE BETWEEN INTERVAL '4 minutes' PRECEDING AND CURRENT ROW),
    w30 AS (PARTITION BY m.slo_name ORDER BY m.minute
            RANGE BETWEEN INTERVAL '29 minutes' PRECEDING AND CURRENT ROW),
    w60 AS (PARTITION BY m.slo_name ORDER BY m.minute
            RANGE BETWEEN INTERVAL '59 minutes' PRECEDING AND CURRENT ROW),
    w360 AS (PARTITION BY m.slo_name ORDER BY m.minute
             RANGE BETWEEN INTERVAL '359 minutes' PRECEDING AND CURRENT ROW)
)
SELECT
  slo_name,
  service_name,
  minute AS "time",
  requests,
  bad_requests,
  CAST(bad_requests AS DOUBLE) / requests > 1 - objective AS breaching,
  CAST(bad_5m AS DOUBLE) / requests_5m / (1 - objective) AS burn_rate_5m,
  CAST(bad_30m AS DOUBLE) / requests_30m / (1 - objective) AS burn_rate_30m,
  CAST(bad_1h AS DOUBLE) / requests_1h / (1 - objective) AS burn_rate_1h,
  CAST(bad_6h AS DOUBLE) / requests_6h / (1 - objective) AS burn_rate_6h,
  page_alert AND (
    (requests_1h >= min_requests
       AND CAST(bad_1h AS DOUBLE) / requests_1h / (1 - objective) > page_burn_rate_1h
       AND CAST(bad_5m AS DOUBLE) / requests_5m / (1 - objective) > page_burn_rate_1h)
    OR (requests_6h >= min_requests
       AND CAST(bad_6h AS DOUBLE) / requests_6h / (1 - objective) > page_burn_rate_6h
       AND CAST(bad_30m AS DOUBLE) / requests_30m / (1 - objective) > page_burn_rate_6h)
  ) AS page
FROM rolling
