-- server_requests_apdex: server_requests with each request's Apdex class. The threshold T
-- of a service is its row in kpi_apdex_thresholds (from --kpi-service-apdex-threshold-ms),
-- else --kpi-apdex-threshold-ms. satisfied: not bad and duration <= T; tolerating: not bad
-- and T < duration <= 4T; everything else, bad requests included, is frustrated.
CREATE VIEW server_requests_apdex AS
SELECT
  r.*,
  NOT r.is_bad
    AND r.duration_ns <= COALESCE(a.threshold_ns, {default_apdex_threshold_ns}) AS satisfied,
  NOT r.is_bad
    AND r.duration_ns > COALESCE(a.threshold_ns, {default_apdex_threshold_ns})
    AND r.duration_ns <= 4 * COALESCE(a.threshold_ns, {default_apdex_threshold_ns}) AS tolerating
FROM server_requests r
LEFT JOIN kpi_apdex_thresholds a ON a.service_name = r.service_name
