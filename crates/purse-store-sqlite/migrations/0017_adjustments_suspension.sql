-- Adjustments by category: goodwill and write-offs get system accounts of their own
-- (corrections keep the adjustments account), for every currency.
INSERT INTO accounts (id, client_id, party_id, kind, system_role, parent_id, currency, status, credit_limit,
                      temp_increase, temp_valid_until, thresholds, created_at, client_tenant)
SELECT (SELECT COALESCE(MAX(id), 0) FROM accounts) + ROW_NUMBER() OVER (ORDER BY c.code, r.role),
       NULL, NULL, 'system', r.role, NULL, c.code, 'open', 0, NULL, NULL, '', 0, ''
FROM currencies c CROSS JOIN (SELECT 'goodwill' AS role UNION ALL SELECT 'write_offs') r
WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.currency = c.code AND a.system_role = r.role);
INSERT INTO balances (account_id, balance, reserved, children_balance, last_charge_at, last_transfer_id, uninvoiced)
SELECT id, 0, 0, 0, NULL, NULL, 0 FROM accounts
WHERE kind = 'system' AND system_role IN ('goodwill', 'write_offs') AND id NOT IN (SELECT account_id FROM balances);
