-- server_requests: every request a service served, one row per entry span (SERVER or
-- CONSUMER), with whether it went bad and the endpoint it hit.
--
-- is_bad follows the OpenTelemetry semantic conventions for the serving side: span status
-- ERROR; HTTP status >= 500 (4xx is the client's fault on a server span); gRPC status
-- UNKNOWN (2), DEADLINE_EXCEEDED (4), UNIMPLEMENTED (12), INTERNAL (13), UNAVAILABLE (14) or
-- DATA_LOSS (15). Throttling (HTTP 429, gRPC RESOURCE_EXHAUSTED 8) counts as bad only with
-- --kpi-throttled-is-bad. A status the instrumentation set to OK is final.
--
-- endpoint: the HTTP route, else "rpc.service/rpc.method", else the span name.
-- Requests to health-check routes (--kpi-health-check-routes) are not requests.
CREATE VIEW server_requests AS
SELECT
  start_time,
  end_time,
  duration_ns,
  service_name,
  service_version,
  service_instance_id,
  span_kind,
  span_name,
  COALESCE(
    http_route,
    CASE WHEN rpc_service IS NOT NULL THEN rpc_service || '/' || COALESCE(rpc_method, '') END,
    span_name
  ) AS endpoint,
  CASE
    WHEN status_code = 'OK' THEN false
    WHEN status_code = 'ERROR' THEN true
    WHEN http_response_status_code >= 500 THEN true
    WHEN rpc_grpc_status_code IN (2, 4, 12, 13, 14, 15) THEN true
    WHEN {throttled_is_bad} AND (http_response_status_code = 429 OR rpc_grpc_status_code = 8) THEN true
    ELSE false
  END AS is_bad,
  status_code,
  http_request_method,
  http_route,
  http_response_status_code,
  rpc_system,
  rpc_service,
  rpc_method,
  rpc_grpc_status_code,
  error_type,
  trace_id,
  span_id,
  parent_span_id
FROM spans
WHERE span_kind IN ('SERVER', 'CONSUMER')
  AND NOT COALESCE(COALESCE(http_route, url_path) IN ({health_check_routes}), false)
