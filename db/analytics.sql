-- Analytics over the audit trail (PostgreSQL). Each query is named by its "-- name:" line;
-- tests/test_db.py runs every one of them. "attrition rate" is the share of scored employees
-- predicted to leave; "mean risk" the mean predicted probability.

-- name: by_department
SELECT input ->> 'departement' AS departement,
       count(*) AS predictions,
       avg(prediction::float) AS attrition_rate,
       avg(probability) AS mean_risk
FROM predictions
GROUP BY 1
ORDER BY 1;

-- name: by_job
SELECT input ->> 'poste' AS poste,
       count(*) AS predictions,
       avg(prediction::float) AS attrition_rate,
       avg(probability) AS mean_risk
FROM predictions
GROUP BY 1
ORDER BY 1;

-- name: by_seniority_band
SELECT CASE
         WHEN (input ->> 'annees_dans_l_entreprise')::int < 2 THEN '0-1 years'
         WHEN (input ->> 'annees_dans_l_entreprise')::int < 5 THEN '2-4 years'
         WHEN (input ->> 'annees_dans_l_entreprise')::int < 10 THEN '5-9 years'
         ELSE '10+ years'
       END AS seniority_band,
       count(*) AS predictions,
       avg(prediction::float) AS attrition_rate,
       avg(probability) AS mean_risk
FROM predictions
GROUP BY 1
ORDER BY min((input ->> 'annees_dans_l_entreprise')::int);

-- name: by_week
SELECT date_trunc('week', created_at AT TIME ZONE 'UTC') AS week,
       count(*) AS predictions,
       avg(prediction::float) AS attrition_rate,
       avg(probability) AS mean_risk
FROM predictions
GROUP BY 1
ORDER BY 1;

-- name: latest_risk_per_employee
SELECT DISTINCT ON (employee_id)
       employee_id, created_at, probability, prediction, model_tag
FROM predictions
WHERE employee_id IS NOT NULL
ORDER BY employee_id, created_at DESC;
