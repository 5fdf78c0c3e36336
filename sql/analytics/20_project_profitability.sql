-- Revenue, cost and margin per entity, project and month, from the posted accruals,
-- in the entity's functional currency and in the group reporting currency. Revenue includes the
-- recharge of billable expenses (cost + markup) and cost includes every project expense; the
-- expense parts are also shown on their own (recharge_revenue, expense_cost).
CREATE OR REPLACE VIEW analytics.project_profitability AS
WITH lines AS (
    SELECT
        entity,
        customer_job AS project,
        project_code,
        CAST(date_trunc('month', posting_date) AS DATE) AS month,
        functional_currency,
        reporting_currency,
        CASE WHEN account_role IN ('service_revenue', 'expense_recharge') THEN functional_credit - functional_debit ELSE 0 END AS revenue,
        CASE WHEN account_role IN ('cost_of_services', 'project_expenses') THEN functional_debit - functional_credit ELSE 0 END AS cost,
        CASE WHEN account_role IN ('service_revenue', 'expense_recharge') THEN reporting_credit - reporting_debit ELSE 0 END AS revenue_reporting,
        CASE WHEN account_role IN ('cost_of_services', 'project_expenses') THEN reporting_debit - reporting_credit ELSE 0 END AS cost_reporting,
        CASE WHEN account_role = 'expense_recharge' THEN functional_credit - functional_debit ELSE 0 END AS recharge_revenue,
        CASE WHEN account_role = 'project_expenses' THEN functional_debit - functional_credit ELSE 0 END AS expense_cost
    FROM ledger.journal_lines
    WHERE entry_type IN ('revenue_accrual', 'cost_accrual', 'expense_recharge_accrual', 'expense_cost_accrual')
      AND account_role IN ('service_revenue', 'cost_of_services', 'expense_recharge', 'project_expenses')
      AND customer_job IS NOT NULL
)
SELECT
    entity,
    project,
    project_code,
    month,
    functional_currency,
    SUM(revenue) AS revenue,
    SUM(cost) AS cost,
    SUM(revenue) - SUM(cost) AS margin,
    reporting_currency,
    SUM(revenue_reporting) AS revenue_reporting,
    SUM(cost_reporting) AS cost_reporting,
    SUM(revenue_reporting) - SUM(cost_reporting) AS margin_reporting,
    CASE WHEN SUM(revenue) = 0 THEN NULL
         ELSE ROUND(CAST(SUM(revenue) - SUM(cost) AS DOUBLE) / CAST(SUM(revenue) AS DOUBLE), 4) END AS margin_ratio,
    SUM(recharge_revenue) AS recharge_revenue,
    SUM(expense_cost) AS expense_cost
FROM lines
GROUP BY ALL
ORDER BY entity, month, margin_reporting DESC;
