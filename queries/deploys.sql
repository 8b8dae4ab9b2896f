-- deploys: a service starts serving a version (resource service.version) it had not served
-- before. deployed_at: the first request the new version served; previous_version: the
-- version first seen most recently before it. A service's first version is not a deploy, and
-- going back to a version served before (a rollback) is not seen as one.
CREATE VIEW deploys AS
WITH firsts AS (
  SELECT service_name, service_version, min(start_time) AS first_seen
  FROM server_requests
  WHERE service_version IS NOT NULL
  GROUP BY 1, 2
),
ordered AS (
  SELECT
    service_name,
    service_version,
    first_seen,
    lag(service_version) OVER (PARTITION BY service_name ORDER BY first_seen) AS previous_version
  FROM firsts
)
SELECT service_name, previous_version, service_version AS version, first_seen AS deployed_at
FROM ordered
WHERE previous_version IS NOT NULL
