-- Project profitability including intercompany recharges, allocated shared costs, capitalisation
-- and depreciation, per entity, project and month, in the functional and the reporting currency.
-- cost = cost of services after intercompany transfers and capitalisation (capitalised work is not
-- expense); margin = revenue - cost - intercompany_cost - allocated_overhead - depreciation. Revenue
-- includes the recharge of billable expenses and cost the project expenses (core/expenses.py).
CREATE OR REPLACE VIEW analytics.project_profitability_full AS
WITH lines AS (
    SELECT
        entity,
        customer_job AS project,
        project_code,
        CAST(date_trunc('month', posting_date) AS DATE) AS month,
        account_role,
        functional_currency,
        reporting_currency,
        functional_debit - functional_credit AS fn,
        reporting_debit - reporting_credit AS rp
    FROM ledger.journal_lines
    WHERE customer_job IS NOT NULL
      AND account_role IN ('service_revenue', 'cost_of_services', 'intercompany_cost', 'allocated_overhead',
                           'capitalised_costs', 'depreciation_expense', 'expense_recharge', 'project_expenses')
)
SELECT
    entity,
    project,
    MAX(project_code) AS project_code,
    month,
    functional_currency,
    -SUM(CASE WHEN account_role IN ('service_revenue', 'expense_recharge') THEN fn ELSE 0 END) AS revenue,
    SUM(CASE WHEN account_role IN ('cost_of_services', 'project_expenses') THEN fn ELSE 0 END) AS cost,
    SUM(CASE WHEN account_role = 'intercompany_cost' THEN fn ELSE 0 END) AS intercompany_cost,
    SUM(CASE WHEN account_role = 'allocated_overhead' THEN fn ELSE 0 END) AS allocated_overhead,
    SUM(CASE WHEN account_role = 'capitalised_costs' THEN fn ELSE 0 END) AS capitalised,
    SUM(CASE WHEN account_role = 'depreciation_expense' THEN fn ELSE 0 END) AS depreciation,
    -SUM(CASE WHEN account_role NOT IN ('capitalised_costs') THEN fn ELSE 0 END) AS margin,
    reporting_currency,
    -SUM(CASE WHEN account_role IN ('service_revenue', 'expense_recharge') THEN rp ELSE 0 END) AS revenue_reporting,
    SUM(CASE WHEN account_role IN ('cost_of_services', 'intercompany_cost', 'allocated_overhead',
                                   'depreciation_expense', 'project_expenses') THEN rp ELSE 0 END) AS total_cost_reporting,
    -SUM(CASE WHEN account_role NOT IN ('capitalised_costs') THEN rp ELSE 0 END) AS margin_reporting
FROM lines
GROUP BY entity, project, month, functional_currency, reporting_currency
ORDER BY entity, month, margin_reporting DESC;
