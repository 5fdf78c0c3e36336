-- What was not accepted, where and why: one row per entity, layer and reason.
CREATE OR REPLACE VIEW analytics.quarantine_summary AS
SELECT
    entity,
    layer,
    reason,
    COUNT(*) AS rows,
    MIN(partition_date) AS first_date,
    MAX(partition_date) AS last_date,
    COUNT(DISTINCT source_file) AS files,
    ANY_VALUE(detail) AS example_detail
FROM staging.quarantine
GROUP BY ALL
ORDER BY entity, rows DESC;
