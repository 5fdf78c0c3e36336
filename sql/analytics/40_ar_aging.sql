-- Open receivables by age bucket (days past due at the as-of date, today by default).
-- What is open per document comes from analytics.open_items (35_billing.sql): totals less credit
-- memos applied, retainer drawdowns and payments (partial payments leave the rest open).
CREATE OR REPLACE VIEW analytics.ar_aging AS
SELECT
    entity,
    customer_ref,
    client_name,
    currency,
    COUNT(*) AS invoices,
    SUM(open) AS open_total,
    SUM(CASE WHEN current_date <= due_date THEN open ELSE 0 END) AS current,
    SUM(CASE WHEN current_date - due_date BETWEEN 1 AND 30 THEN open ELSE 0 END) AS days_1_30,
    SUM(CASE WHEN current_date - due_date BETWEEN 31 AND 60 THEN open ELSE 0 END) AS days_31_60,
    SUM(CASE WHEN current_date - due_date BETWEEN 61 AND 90 THEN open ELSE 0 END) AS days_61_90,
    SUM(CASE WHEN current_date - due_date > 90 THEN open ELSE 0 END) AS days_over_90
FROM analytics.open_items
WHERE open <> 0
GROUP BY ALL
ORDER BY entity, open_total DESC;
