-- FX exposure: open monetary items (customer receivables, intercompany balances) held in a currency
-- other than the entity's functional currency: the open amount in that currency, its carrying amount
-- at historical rates, and the latest period-end revaluation (closing rate, unrealised gain/loss).
CREATE OR REPLACE VIEW analytics.fx_exposure AS
WITH items AS (
    SELECT
        entity,
        account_role,
        customer_ref,
        document_id,
        MAX(CASE WHEN currency <> functional_currency THEN currency END) AS currency,
        ANY_VALUE(functional_currency) AS functional_currency,
        ANY_VALUE(reporting_currency) AS reporting_currency,
        SUM(CASE WHEN currency <> functional_currency THEN debit - credit ELSE 0 END) AS open_amount,
        SUM(functional_debit - functional_credit) AS carrying_functional,
        SUM(reporting_debit - reporting_credit) AS carrying_reporting
    FROM ledger.journal_lines
    WHERE account_role IN ('accounts_receivable', 'intercompany_receivable', 'intercompany_payable')
      AND entry_type NOT IN ('fx_revaluation', 'fx_revaluation_reversal')
    GROUP BY entity, account_role, customer_ref, document_id
),
latest AS (
    SELECT *
    FROM ledger.fx_revaluations
    QUALIFY row_number() OVER (
        PARTITION BY entity, account_role, customer_ref, document_id ORDER BY period_end DESC
    ) = 1
)
SELECT
    i.entity,
    i.account_role,
    i.customer_ref,
    i.document_id,
    inv.invoice_number,
    inv.due_date,
    i.currency,
    i.open_amount,
    i.functional_currency,
    i.carrying_functional,
    i.reporting_currency,
    i.carrying_reporting,
    l.period_end AS last_revaluation,
    l.closing_rate_functional,
    l.rate_date AS closing_rate_date,
    l.rate_source AS closing_rate_source,
    l.unrealised_functional_minor AS last_unrealised_functional_minor,
    l.unrealised_reporting_minor AS last_unrealised_reporting_minor
FROM items i
LEFT JOIN ledger.invoices inv ON inv.invoice_id = i.document_id AND inv.entity = i.entity
LEFT JOIN latest l
    ON l.entity = i.entity
   AND l.account_role = i.account_role
   AND l.customer_ref IS NOT DISTINCT FROM i.customer_ref
   AND l.document_id IS NOT DISTINCT FROM i.document_id
WHERE i.currency IS NOT NULL AND i.open_amount <> 0
ORDER BY i.entity, i.currency, i.open_amount DESC;
