-- service_graph_calls: the dependency graph's calls, one row per call, from which
-- service_graph_1m and edge_rollup_1m count: "time" is the client span's start (the server
-- span's for calls from 'user'); client, server and connection_type as in service_graph_1m;
-- client_ns, server_ns: the latency each side saw (server_ns NULL for virtual nodes);
-- failed and failed_origin_*: 1 or 0, as service_graph_1m defines them.
--
-- An edge is a CLIENT (or PRODUCER) span of service A paired with the SERVER (or CONSUMER)
-- span of service B whose parent it is, in the same trace (Tempo's service graphs). A call
-- without such a span goes to a virtual node named by peer.service, server.address or
-- db.system ('unknown' without any): connection_type 'database' when db.system is set,
-- else 'virtual_node'. PRODUCER calls are 'messaging_system'. An entry span without a
-- parent is a call from the virtual client 'user'.
--
-- Planned per query (analytics/src/ranged_view.rs): a filter on "time" limits the spans read to
-- that range widened by 15 minutes each side ({start_time_bounds}), so a span is paired with
-- its parent or child when they start within 15 minutes of each other.
CREATE VIEW service_graph_calls AS
WITH calls AS (
  SELECT trace_id, span_id, start_time, duration_ns, service_name, span_kind, is_error,
         peer_service, server_address, db_system
  FROM spans
  WHERE span_kind IN ('CLIENT', 'PRODUCER') AND {start_time_bounds}
),
entries AS (
  SELECT trace_id, span_id, parent_span_id, start_time, end_time, duration_ns, service_name,
         is_error
  FROM spans
  WHERE span_kind IN ('SERVER', 'CONSUMER') AND {start_time_bounds}
),
failed_downstream AS (
  SELECT DISTINCT e.trace_id, e.span_id, true AS failed
  FROM entries e
  JOIN calls c ON c.trace_id = e.trace_id AND c.service_name = e.service_name
  WHERE e.is_error AND c.is_error
    AND c.start_time >= e.start_time AND c.start_time <= e.end_time
),
served AS (
  SELECT e.*, d.failed AS downstream_failed
  FROM entries e
  LEFT JOIN failed_downstream d ON d.trace_id = e.trace_id AND d.span_id = e.span_id
),
edges AS (
  SELECT
    c.start_time,
    c.service_name AS client,
    COALESCE(s.service_name, c.peer_service, c.server_address, c.db_system, 'unknown') AS server,
    CASE
      WHEN c.span_kind = 'PRODUCER' THEN 'messaging_system'
      WHEN s.span_id IS NULL AND c.db_system IS NOT NULL THEN 'database'
      WHEN s.span_id IS NULL THEN 'virtual_node'
      ELSE ''
    END AS connection_type,
    c.duration_ns AS client_ns,
    s.duration_ns AS server_ns,
    c.is_error AS client_failed,
    COALESCE(s.is_error, false) AS server_failed,
    s.downstream_failed
  FROM calls c
  LEFT JOIN served s ON s.trace_id = c.trace_id AND s.parent_span_id = c.span_id
  UNION ALL
  SELECT start_time, 'user', service_name, '', duration_ns AS client_ns, duration_ns AS server_ns,
         false, is_error, downstream_failed
  FROM served
  WHERE parent_span_id IS NULL
)
SELECT
  start_time AS "time",
  client,
  server,
  connection_type,
  client_ns,
  server_ns,
  CASE WHEN client_failed OR server_failed THEN 1 ELSE 0 END AS failed,
  CASE WHEN server_failed AND downstream_failed IS TRUE THEN 1 ELSE 0 END
    AS failed_origin_downstream,
  CASE WHEN server_failed AND downstream_failed IS NOT TRUE THEN 1 ELSE 0 END
    AS failed_origin_server,
  CASE WHEN client_failed AND NOT server_failed THEN 1 ELSE 0 END AS failed_origin_edge
FROM edges
