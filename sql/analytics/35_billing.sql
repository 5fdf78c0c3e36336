-- Billing views. Open items: what is still owed on each document, total + settlements (credit memos
-- applied, retainer drawdowns, refunds) - payments. Documents billing issued replace the invoices of
-- ledger.invoices for their month; months billing has not run for keep ledger.invoices' invoices.
-- Payments are applied to any receivable document by number (invoices, supplementary and retainer
-- invoices), so `paid` is per document id of either table.
CREATE OR REPLACE VIEW analytics.open_items AS
WITH settled AS (
    SELECT document_id, SUM(amount) AS settled FROM ledger.settlements GROUP BY ALL
),
paid AS (
    SELECT invoice_id AS document_id, SUM(amount) AS paid FROM ledger.payments GROUP BY ALL
),
billed_months AS (
    SELECT DISTINCT entity, issued_in AS month FROM ledger.billing_documents
),
documents AS (
    SELECT entity, document_id, document_number, document_type, customer_ref, client_name, currency,
           issue_date, due_date, total
    FROM ledger.billing_documents
    UNION ALL
    SELECT i.entity, i.invoice_id, i.invoice_number, 'invoice', i.customer_ref, i.client_name, i.currency,
           i.issue_date, i.due_date, i.total
    FROM ledger.invoices i
    WHERE NOT EXISTS (
        SELECT 1 FROM billed_months b
        WHERE b.entity = i.entity AND b.month = CAST(date_trunc('month', i.period_start) AS DATE)
    )
)
SELECT
    d.entity,
    d.document_id,
    d.document_number,
    d.document_type,
    d.customer_ref,
    d.client_name,
    d.currency,
    d.issue_date,
    d.due_date,
    d.total,
    CAST(COALESCE(s.settled, 0) AS DECIMAL(18, 3)) AS settled,
    CAST(COALESCE(p.paid, 0) AS DECIMAL(18, 3)) AS paid,
    CAST(d.total + COALESCE(s.settled, 0) - COALESCE(p.paid, 0) AS DECIMAL(18, 3)) AS open
FROM documents d
LEFT JOIN settled s USING (document_id)
LEFT JOIN paid p USING (document_id)
ORDER BY d.entity, d.document_number;

-- Retainer balance per client and currency: prepaid on retainer invoices, drawn down by invoices.
CREATE OR REPLACE VIEW analytics.retainer_balances AS
SELECT
    entity,
    customer_ref,
    client_name,
    currency,
    CAST(SUM(CASE WHEN kind = 'issued' THEN amount ELSE 0 END) AS DECIMAL(18, 3)) AS issued,
    CAST(-SUM(CASE WHEN kind = 'drawn' THEN amount ELSE 0 END) AS DECIMAL(18, 3)) AS drawn,
    CAST(SUM(amount) AS DECIMAL(18, 3)) AS balance
FROM ledger.retainer_movements
GROUP BY ALL
ORDER BY entity, customer_ref, currency;

-- Client spellings waiting for review (pm-accounting clients review|accept|reject), as last logged.
CREATE OR REPLACE VIEW analytics.client_review AS
SELECT
    entity,
    source_name,
    arg_max(client_name, partition_date) AS suggested_client,
    arg_max(score, partition_date) AS score,
    SUM(rows) AS rows,
    MIN(partition_date) AS first_seen,
    MAX(partition_date) AS last_seen
FROM staging.client_matches
WHERE outcome = 'review'
GROUP BY ALL
ORDER BY entity, score DESC;

-- Billable work not billed yet, per client and currency: held by the calendar (the month or week
-- has not been billed), or waiting for an on-demand request (clients[].billing_cycle: on_demand).
-- It sits in unbilled receivables until billing issues it.
CREATE OR REPLACE VIEW analytics.unbilled_work AS
SELECT
    f.entity,
    f.customer_ref,
    f.client_name,
    f.currency,
    COUNT(*) AS entries,
    MIN(f.work_date) AS first_work_date,
    MAX(f.work_date) AS last_work_date,
    SUM(f.billed_hours) AS hours,
    SUM(CAST(f.amount_minor AS BIGINT)) AS amount_minor
FROM staging.fx_billables f
WHERE f.billing_status = 'billable' AND f.amount_minor > 0
  AND NOT EXISTS (
    SELECT 1 FROM ledger.billing_line_sources s
    WHERE s.source_system = f.source_system AND s.source_id = f.source_id
      AND s.customer_ref = f.customer_ref AND s.currency = f.currency AND s.line_no >= 1
  )
GROUP BY ALL
ORDER BY f.entity, f.customer_ref, f.currency;
