-- slo_status: every SLO (slo_definitions: the SLO file's, and the default for every other
-- service that served requests within the default window) evaluated now over slo_events.
--
-- A request is bad for an availability SLO when is_bad, for a latency SLO also when it took
-- longer than the threshold. Over the SLO's rolling window:
--   sli: good / all requests (occurrences), or good slices / slices with requests (timeslices:
--        a slice is good when its good fraction reaches the slice target);
--   error_budget_total: bad requests (or slices) the objective allows, (1 - objective) x total;
--   error_budget_consumed: bad requests (or slices); error_budget_remaining: the fraction
--        left, 1 - consumed / total (negative once overspent; NULL without requests).
-- burn_rate_<w>: the bad fraction over the last w divided by (1 - objective): 1 spends the
-- budget exactly over the window. Windows longer than the SLO's still see 3 days back.
-- page: burn rate above 14.4 over both 1 h and 5 min, or above 6 over both 6 h and 30 min;
-- ticket: above 1 over both 3 d and 6 h (SRE workbook; the rates, and whether an SLO pages or
-- opens tickets at all, come from its alerting settings). An alert needs at least
-- min_requests requests in its long window.
CREATE VIEW slo_status AS
-- slo_events is read once: per time slice, then per SLO.
WITH slices AS (
  SELECT
    slo_name,
    slice,
    sum(CASE WHEN age_ns < window_ns THEN requests ELSE 0 END) AS requests,
    sum(CASE WHEN age_ns < window_ns THEN bad ELSE 0 END) AS bad,
    sum(CASE WHEN age_ns < 300000000000 THEN requests ELSE 0 END) AS requests_5m,
    sum(CASE WHEN age_ns < 300000000000 THEN bad ELSE 0 END) AS bad_5m,
    sum(CASE WHEN age_ns < 1800000000000 THEN requests ELSE 0 END) AS requests_30m,
    sum(CASE WHEN age_ns < 1800000000000 THEN bad ELSE 0 END) AS bad_30m,
    sum(CASE WHEN age_ns < 3600000000000 THEN requests ELSE 0 END) AS requests_1h,
    sum(CASE WHEN age_ns < 3600000000000 THEN bad ELSE 0 END) AS bad_1h,
    sum(CASE WHEN age_ns < 21600000000000 THEN requests ELSE 0 END) AS requests_6h,
    sum(CASE WHEN age_ns < 21600000000000 THEN bad ELSE 0 END) AS bad_6h,
    sum(CASE WHEN age_ns < 86400000000000 THEN requests ELSE 0 END) AS requests_1d,
    sum(CASE WHEN age_ns < 86400000000000 THEN bad ELSE 0 END) AS bad_1d,
    sum(CASE WHEN age_ns < 259200000000000 THEN requests ELSE 0 END) AS requests_3d,
    sum(CASE WHEN age_ns < 259200000000000 THEN bad ELSE 0 END) AS bad_3d
  FROM slo_events
  GROUP BY slo_name, slice
),
totals AS (
  SELECT
    s.slo_name,
    sum(s.requests) AS requests,
    sum(s.bad) AS bad_requests,
    sum(s.requests_5m) AS requests_5m,
    sum(s.bad_5m) AS bad_5m,
    sum(s.requests_30m) AS requests_30m,
    sum(s.bad_30m) AS bad_30m,
    sum(s.requests_1h) AS requests_1h,
    sum(s.bad_1h) AS bad_1h,
    sum(s.requests_6h) AS requests_6h,
    sum(s.bad_6h) AS bad_6h,
    sum(s.requests_1d) AS requests_1d,
    sum(s.bad_1d) AS bad_1d,
    sum(s.requests_3d) AS requests_3d,
    sum(s.bad_3d) AS bad_3d,
    -- Slices with requests in the window, and those whose good fraction misses the target.
    sum(CASE WHEN s.requests > 0 THEN 1 ELSE 0 END) AS slices,
    sum(CASE
      WHEN s.requests = 0 THEN 0
      WHEN 1.0 - CAST(s.bad AS DOUBLE) / s.requests >= o.timeslice_target THEN 0
      ELSE 1
    END) AS bad_slices
  FROM slices s JOIN slo_objectives o ON o.slo_name = s.slo_name
  GROUP BY s.slo_name
),
burn AS (
  SELECT
    o.*,
    COALESCE(t.requests, 0) AS requests,
    COALESCE(t.bad_requests, 0) AS bad_requests,
    COALESCE(t.slices, 0) AS slices,
    COALESCE(t.bad_slices, 0) AS bad_slices,
    CAST(t.bad_5m AS DOUBLE) / NULLIF(t.requests_5m, 0) / (1 - o.objective) AS burn_rate_5m,
    CAST(t.bad_30m AS DOUBLE) / NULLIF(t.requests_30m, 0) / (1 - o.objective) AS burn_rate_30m,
    CAST(t.bad_1h AS DOUBLE) / NULLIF(t.requests_1h, 0) / (1 - o.objective) AS burn_rate_1h,
    CAST(t.bad_6h AS DOUBLE) / NULLIF(t.requests_6h, 0) / (1 - o.objective) AS burn_rate_6h,
    CAST(t.bad_1d AS DOUBLE) / NULLIF(t.requests_1d, 0) / (1 - o.objective) AS burn_rate_1d,
    CAST(t.bad_3d AS DOUBLE) / NULLIF(t.requests_3d, 0) / (1 - o.objective) AS burn_rate_3d,
    COALESCE(t.requests_1h, 0) AS requests_1h,
    COALESCE(t.requests_6h, 0) AS requests_6h,
    COALESCE(t.requests_3d, 0) AS requests_3d
  FROM slo_objectives o
  LEFT JOIN totals t ON t.slo_name = o.slo_name
)
SELECT
  slo_name,
  service_name,
  indicator,
  CAST(latency_threshold_ns AS DOUBLE) / 1e6 AS latency_threshold_ms,
  objective,
  CAST(window_ns AS DOUBLE) / 86400e9 AS window_days,
  budgeting,
  requests,
  bad_requests,
  CASE
    WHEN budgeting = 'timeslices' THEN 1.0 - CAST(bad_slices AS DOUBLE) / NULLIF(slices, 0)
    ELSE 1.0 - CAST(bad_requests AS DOUBLE) / NULLIF(requests, 0)
  END AS sli,
  CASE
    WHEN budgeting = 'timeslices' THEN (1 - objective) * (CAST(window_ns AS DOUBLE) / timeslice_ns)
    ELSE (1 - objective) * requests
  END AS error_budget_total,
  CASE WHEN budgeting = 'timeslices' THEN bad_slices ELSE bad_requests END
    AS error_budget_consumed,
  CASE
    WHEN budgeting = 'timeslices'
      THEN 1.0 - bad_slices / ((1 - objective) * (CAST(window_ns AS DOUBLE) / timeslice_ns))
    ELSE 1.0 - bad_requests / NULLIF((1 - objective) * requests, 0)
  END AS error_budget_remaining,
  burn_rate_5m,
  burn_rate_30m,
  burn_rate_1h,
  burn_rate_6h,
  burn_rate_1d,
  burn_rate_3d,
  COALESCE(
    page_alert AND (
      (requests_1h >= min_requests AND burn_rate_1h > page_burn_rate_1h
        AND burn_rate_5m > page_burn_rate_1h)
      OR (requests_6h >= min_requests AND burn_rate_6h > page_burn_rate_6h
        AND burn_rate_30m > page_burn_rate_6h)
    ),
    false
  ) AS page,
  COALESCE(
    ticket_alert AND requests_3d >= min_requests AND burn_rate_3d > ticket_burn_rate_3d
      AND burn_rate_6h > ticket_burn_rate_3d,
    false
  ) AS ticket
FROM burn
