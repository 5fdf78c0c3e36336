-- Trial balance per entity, account and transaction currency, with functional and reporting totals.
-- Every entry balances, so per entity the functional debits equal the functional credits.
CREATE OR REPLACE VIEW analytics.trial_balance AS
SELECT
    entity,
    account,
    account_role,
    currency,
    SUM(debit) AS debit,
    SUM(credit) AS credit,
    SUM(debit) - SUM(credit) AS balance,
    functional_currency,
    SUM(functional_debit) - SUM(functional_credit) AS functional_balance,
    reporting_currency,
    SUM(reporting_debit) - SUM(reporting_credit) AS reporting_balance
FROM ledger.journal_lines
GROUP BY ALL
ORDER BY entity, account, currency;

-- One row per entity: zero out_of_balance means the entity's books balance on their own.
CREATE OR REPLACE VIEW analytics.trial_balance_check AS
SELECT
    entity,
    functional_currency,
    SUM(functional_debit) AS functional_debit,
    SUM(functional_credit) AS functional_credit,
    SUM(functional_debit) - SUM(functional_credit) AS out_of_balance,
    COUNT(DISTINCT entry_id) AS entries
FROM ledger.journal_lines
GROUP BY ALL
ORDER BY entity;
