-- service_resilience_1m: per service and minute, how often its outgoing calls are retried and
-- time out, and how often the requests it serves time out.
--
-- calls: outgoing call attempts (CLIENT and PRODUCER spans); retries: attempts that are
-- resends (http.request.resend_count >= 1, set on every retry attempt by the HTTP
-- instrumentations); retry_rate = retries / calls.
-- call_timeouts, request_timeouts: outgoing calls and served requests (SERVER and CONSUMER
-- spans, health checks excluded) that timed out: gRPC DEADLINE_EXCEEDED (4), HTTP 408 or 504,
-- or an error.type of --kpi-timeout-error-types. The rates divide by calls and requests; NULL
-- when there are none. Minutes without spans have no row.
CREATE VIEW service_resilience_1m AS
WITH attempts AS (
  SELECT
    date_bin(INTERVAL '1 minute', start_time, TIMESTAMP '1970-01-01T00:00:00Z') AS "time",
    service_name,
    span_kind IN ('CLIENT', 'PRODUCER') AS outgoing,
    COALESCE(json_get_int(attributes, 'http.request.resend_count') >= 1, false) AS is_retry,
    COALESCE(rpc_grpc_status_code = 4, false)
      OR COALESCE(http_response_status_code IN (408, 504), false)
      OR COALESCE(error_type IN ({timeout_error_types}), false) AS is_timeout
  FROM spans
  WHERE span_kind IN ('CLIENT', 'PRODUCER')
    OR (span_kind IN ('SERVER', 'CONSUMER')
        AND NOT COALESCE(COALESCE(http_route, url_path) IN ({health_check_routes}), false))
)
SELECT
  "time",
  service_name,
  sum(CASE WHEN outgoing THEN 1 ELSE 0 END) AS calls,
  sum(CASE WHEN outgoing AND is_retry THEN 1 ELSE 0 END) AS retries,
  CAST(sum(CASE WHEN outgoing AND is_retry THEN 1 ELSE 0 END) AS DOUBLE)
    / NULLIF(sum(CASE WHEN outgoing THEN 1 ELSE 0 END), 0) AS retry_rate,
  sum(CASE WHEN outgoing AND is_timeout THEN 1 ELSE 0 END) AS call_timeouts,
  CAST(sum(CASE WHEN outgoing AND is_timeout THEN 1 ELSE 0 END) AS DOUBLE)
    / NULLIF(sum(CASE WHEN outgoing THEN 1 ELSE 0 END), 0) AS call_timeout_rate,
  sum(CASE WHEN NOT outgoing THEN 1 ELSE 0 END) AS requests,
  sum(CASE WHEN NOT outgoing AND is_timeout THEN 1 ELSE 0 END) AS request_timeouts,
  CAST(sum(CASE WHEN NOT outgoing AND is_timeout THEN 1 ELSE 0 END) AS DOUBLE)
    / NULLIF(sum(CASE WHEN NOT outgoing THEN 1 ELSE 0 END), 0) AS request_timeout_rate
FROM attempts
GROUP BY 1, 2
