-- Profit and loss per entity and month from the posted ledger (income positive, expenses negative),
-- in the entity's functional currency and in the reporting currency. `overhead_reclassified` is the
-- credit that moves shared costs out of their GL accounts when they are allocated to projects.
CREATE OR REPLACE VIEW analytics.pnl_by_entity AS
SELECT
    entity,
    CAST(date_trunc('month', posting_date) AS DATE) AS month,
    CASE WHEN account_role IN ('service_revenue', 'intercompany_revenue', 'expense_recharge') THEN 'income'
         WHEN account_role IN ('realised_fx_gain_loss', 'unrealised_fx_gain_loss') THEN 'fx'
         ELSE 'expense' END AS section,
    CASE WHEN account_role = 'overhead_source' THEN 'overhead_reclassified' ELSE account_role END AS line,
    functional_currency,
    SUM(functional_credit) - SUM(functional_debit) AS amount,
    reporting_currency,
    SUM(reporting_credit) - SUM(reporting_debit) AS amount_reporting
FROM ledger.journal_lines
WHERE account_role IN (
    'service_revenue', 'intercompany_revenue', 'expense_recharge', 'discounts', 'write_off',
    'cost_of_services', 'project_expenses', 'intercompany_cost', 'allocated_overhead', 'overhead_source',
    'depreciation_expense', 'realised_fx_gain_loss', 'unrealised_fx_gain_loss'
)
GROUP BY ALL
ORDER BY entity, month, section, line;

-- The group's profit and loss per month in the reporting currency: every entity plus the
-- consolidation eliminations, so intercompany revenue and cost are zero.
CREATE OR REPLACE VIEW analytics.pnl_consolidated AS
WITH lines AS (
    SELECT posting_date, account_role, reporting_currency, reporting_debit, reporting_credit FROM ledger.journal_lines
    UNION ALL
    SELECT posting_date, account_role, reporting_currency, reporting_debit, reporting_credit FROM ledger.elimination_lines
)
SELECT
    CAST(date_trunc('month', posting_date) AS DATE) AS month,
    CASE WHEN account_role IN ('service_revenue', 'intercompany_revenue', 'expense_recharge') THEN 'income'
         WHEN account_role IN ('realised_fx_gain_loss', 'unrealised_fx_gain_loss', 'consolidation_difference') THEN 'fx'
         ELSE 'expense' END AS section,
    CASE WHEN account_role = 'overhead_source' THEN 'overhead_reclassified' ELSE account_role END AS line,
    reporting_currency,
    SUM(reporting_credit) - SUM(reporting_debit) AS amount_reporting
FROM lines
WHERE account_role IN (
    'service_revenue', 'intercompany_revenue', 'expense_recharge', 'discounts', 'write_off',
    'cost_of_services', 'project_expenses', 'intercompany_cost', 'allocated_overhead', 'overhead_source',
    'depreciation_expense', 'realised_fx_gain_loss', 'unrealised_fx_gain_loss', 'consolidation_difference'
)
GROUP BY ALL
ORDER BY month, section, line;
