-- service_saturation_1m: per service instance and minute, how busy its CPU and memory are,
-- from the standard OpenTelemetry resource metrics where the data has them.
--
-- instance: service.instance.id, else the k8s.pod.name or container.id resource attribute.
-- cpu_utilization (0..1, average over the minute) and cpu_utilization_max: of the pod's or
--   container's CPU limit (k8s.pod.cpu_limit_utilization, k8s.container.cpu_limit_utilization),
--   else of the CPUs the process may use (process.cpu.utilization, summed over cpu.mode).
-- cpu_cores: CPU used, in cores (k8s.pod.cpu.usage, container.cpu.usage).
-- memory_bytes (average) and memory_bytes_max: k8s.pod.memory.working_set,
--   k8s.pod.memory.usage, container.memory.usage or process.memory.usage, the first present.
-- memory_utilization (0..1): of the memory limit (k8s.pod.memory_limit_utilization,
--   k8s.container.memory_limit_utilization).
-- cpu_metric, memory_metric: the metrics cpu_utilization and memory_bytes came from (else
-- cpu_cores and memory_utilization). Points flagged as having no
-- value are skipped; an instance's metrics must carry its service.name (the Collector's
-- k8sattributes processor adds it to kubeletstats metrics).
CREATE VIEW service_saturation_1m AS
WITH signals (metric_name, signal, priority) AS (
  VALUES
    ('k8s.pod.cpu_limit_utilization', 'cpu_utilization', 1),
    ('k8s.container.cpu_limit_utilization', 'cpu_utilization', 2),
    ('process.cpu.utilization', 'cpu_utilization', 3),
    ('k8s.pod.cpu.usage', 'cpu_cores', 1),
    ('container.cpu.usage', 'cpu_cores', 2),
    ('k8s.pod.memory.working_set', 'memory_bytes', 1),
    ('k8s.pod.memory.usage', 'memory_bytes', 2),
    ('container.memory.usage', 'memory_bytes', 3),
    ('process.memory.usage', 'memory_bytes', 4),
    ('k8s.pod.memory_limit_utilization', 'memory_utilization', 1),
    ('k8s.container.memory_limit_utilization', 'memory_utilization', 2)
),
points AS (
  -- One value per instance, metric and time: the sum over the point's attributes (cpu.mode).
  SELECT
    p."time",
    p.service_name,
    COALESCE(
      p.service_instance_id,
      json_get_str(p.resource_attributes, 'k8s.pod.name'),
      json_get_str(p.resource_attributes, 'container.id')
    ) AS instance,
    p.metric_name,
    sum(p.value) AS value
  FROM metric_points p
  WHERE p.metric_name IN (SELECT metric_name FROM signals) AND p.flags & 1 = 0
  GROUP BY 1, 2, 3, 4
),
minutes AS (
  SELECT
    date_bin(INTERVAL '1 minute', p."time", TIMESTAMP '1970-01-01T00:00:00Z') AS "time",
    p.service_name,
    p.instance,
    s.signal,
    s.priority,
    p.metric_name,
    avg(p.value) AS value,
    max(p.value) AS value_max
  FROM points p
  JOIN signals s ON s.metric_name = p.metric_name
  GROUP BY 1, 2, 3, 4, 5, 6
)
SELECT
  "time",
  service_name,
  instance,
  first_value(value ORDER BY priority) FILTER (WHERE signal = 'cpu_utilization')
    AS cpu_utilization,
  first_value(value_max ORDER BY priority) FILTER (WHERE signal = 'cpu_utilization')
    AS cpu_utilization_max,
  first_value(value ORDER BY priority) FILTER (WHERE signal = 'cpu_cores') AS cpu_cores,
  first_value(value ORDER BY priority) FILTER (WHERE signal = 'memory_bytes') AS memory_bytes,
  first_value(value_max ORDER BY priority) FILTER (WHERE signal = 'memory_bytes')
    AS memory_bytes_max,
  first_value(value ORDER BY priority) FILTER (WHERE signal = 'memory_utilization')
    AS memory_utilization,
  first_value(metric_name ORDER BY signal <> 'cpu_utilization', priority)
    FILTER (WHERE signal IN ('cpu_utilization', 'cpu_cores')) AS cpu_metric,
  first_value(metric_name ORDER BY signal <> 'memory_bytes', priority)
    FILTER (WHERE signal IN ('memory_bytes', 'memory_utilization')) AS memory_metric
FROM minutes
GROUP BY 1, 2, 3
