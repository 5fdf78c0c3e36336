-- Consolidated trial balance in the reporting currency: every legal entity plus the elimination
-- entries of the consolidation entity. Intercompany receivables, payables, revenue and cost are
-- zero once both sides of every pair are eliminated.
CREATE OR REPLACE VIEW analytics.consolidated_trial_balance AS
WITH lines AS (
    SELECT entity, account_role, reporting_currency, reporting_debit, reporting_credit FROM ledger.journal_lines
    UNION ALL
    SELECT entity, account_role, reporting_currency, reporting_debit, reporting_credit FROM ledger.elimination_lines
)
SELECT
    account_role,
    reporting_currency,
    SUM(reporting_debit) AS debit,
    SUM(reporting_credit) AS credit,
    SUM(reporting_debit) - SUM(reporting_credit) AS balance,
    COUNT(DISTINCT entity) AS entities
FROM lines
GROUP BY ALL
ORDER BY account_role;
