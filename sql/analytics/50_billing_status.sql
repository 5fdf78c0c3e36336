-- Hours and amounts per entity, month and billing status: what was billed, held for approval,
-- non-billable or internal. Held work is visible here until it is approved and billed.
CREATE OR REPLACE VIEW analytics.billing_status AS
SELECT
    entity,
    CAST(date_trunc('month', work_date) AS DATE) AS month,
    billing_status,
    COUNT(*) AS entries,
    SUM(billed_hours) AS hours,
    functional_currency,
    SUM(CAST(amount_functional_minor AS BIGINT)) AS amount_functional_minor
FROM staging.fx_billables
GROUP BY ALL
ORDER BY entity, month, billing_status;
