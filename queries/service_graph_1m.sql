-- service_graph_1m: per minute, the dependency graph's edges client -> server with their
-- traffic, failures, latency and where the failures came from: service_graph_calls counted
-- per minute of the client span's start.
--
-- requests: calls; failed: calls where the client or the server span is an error (is_error).
-- Every failed call has one origin:
--   failed_origin_downstream: the server span failed while one of its own outgoing calls
--     (same trace and service, started within it) failed: the failure came from further down;
--   failed_origin_server: the server span failed without a failed outgoing call;
--   failed_origin_edge: only the client saw it (timeout, connection error, circuit breaker)
--     or the callee is not instrumented.
-- p50_ms, p95_ms: latency the client saw (the server span's for calls from 'user');
-- server_p95_ms: latency the server reported, NULL for virtual nodes.
--
-- Hours whose edges are in edge_rollup_1m (settled, and not changed by late spans since) are
-- read from it, with percentiles from its latency sketches (within 0.54 %); the other hours
-- are counted from the spans with exact percentiles. The counts are the same either way.
-- Planned per query (analytics/src/service_graph.rs): {raw_calls} and {rolled_minutes} become the
-- hours of the asked range each source answers.
CREATE VIEW service_graph_1m AS
SELECT
  date_bin(INTERVAL '1 minute', "time", TIMESTAMP '1970-01-01T00:00:00Z') AS "time",
  client,
  server,
  connection_type,
  count(*) AS requests,
  sum(failed) AS failed,
  sum(failed_origin_downstream) AS failed_origin_downstream,
  sum(failed_origin_server) AS failed_origin_server,
  sum(failed_origin_edge) AS failed_origin_edge,
  percentile_cont(0.5) WITHIN GROUP (ORDER BY client_ns) / 1e6 AS p50_ms,
  percentile_cont(0.95) WITHIN GROUP (ORDER BY client_ns) / 1e6 AS p95_ms,
  percentile_cont(0.95) WITHIN GROUP (ORDER BY server_ns) / 1e6 AS server_p95_ms
FROM service_graph_calls
WHERE {raw_calls}
GROUP BY 1, 2, 3, 4
UNION ALL
-- An up-to-date hour has one file, with one row per minute and edge: no grouping needed.
SELECT
  "time",
  client,
  server,
  connection_type,
  requests,
  failed,
  failed_origin_downstream,
  failed_origin_server,
  failed_origin_edge,
  exp_histogram_percentile(0.5, named_struct(
    'scale', arrow_cast({sketch_scale}, 'Int32'),
    'zero_count', client_zero_count,
    'bucket_index', client_bucket_index,
    'bucket_count', client_bucket_count)) / 1e6,
  exp_histogram_percentile(0.95, named_struct(
    'scale', arrow_cast({sketch_scale}, 'Int32'),
    'zero_count', client_zero_count,
    'bucket_index', client_bucket_index,
    'bucket_count', client_bucket_count)) / 1e6,
  CASE WHEN server_bucket_index IS NOT NULL THEN
    exp_histogram_percentile(0.95, named_struct(
      'scale', arrow_cast({sketch_scale}, 'Int32'),
      'zero_count', server_zero_count,
      'bucket_index', server_bucket_index,
      'bucket_count', server_bucket_count)) / 1e6
  END
FROM edge_rollup_1m
WHERE {rolled_minutes}
