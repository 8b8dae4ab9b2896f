-- slo_objectives: every SLO in force: those of the SLO file (slo_definitions), and the
-- default one (service '*') for every other service that served requests within the default
-- window (to the hour: service_rollup_1h), named "<service>-availability".
CREATE VIEW slo_objectives AS
SELECT * FROM slo_definitions WHERE service_name <> '*'
  UNION ALL
  SELECT
    s.service_name || '-' || d.slo_name AS slo_name,
    s.service_name,
    d.indicator,
    d.latency_threshold_ns,
    d.objective,
    d.window_ns,
    d.budgeting,
    d.timeslice_ns,
    d.timeslice_target,
    d.min_requests,
    d.page_alert,
    d.ticket_alert,
    d.page_burn_rate_1h,
    d.page_burn_rate_6h,
    d.ticket_burn_rate_3d
  FROM slo_definitions d
  CROSS JOIN (
    SELECT DISTINCT service_name FROM service_rollup_1h
    WHERE span_kind IN ('SERVER', 'CONSUMER') AND NOT health_check
      AND "time" > now() - INTERVAL '{slo_history_seconds} seconds' - INTERVAL '1 hour'
      AND CAST("time" AS BIGINT) + 3600000000000 > CAST(now() AS BIGINT)
      - (SELECT max(window_ns) FROM slo_definitions WHERE service_name = '*')
  ) s
  WHERE d.service_name = '*'
    AND s.service_name NOT IN (SELECT service_name FROM slo_definitions WHERE service_name <> '*')
