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

-- Dunning policies: the operator's default, a reseller's, a customer class's (the class's
-- wins, then the reseller's, then the operator's). Amounts below which a prepaid customer is
-- suspended are decimals in the customer's currency.
CREATE TABLE dunning_policies (
    owner              TEXT PRIMARY KEY,
    payment_terms_days INTEGER NOT NULL,
    reminder_days      TEXT NOT NULL,
    suspend_after_days INTEGER,
    suspend_below      TEXT,
    updated_at         INTEGER NOT NULL
);

-- A customer's suspensions: at most one in force (not lifted) per customer.
CREATE TABLE suspensions (
    id          INTEGER PRIMARY KEY,
    party_id    INTEGER NOT NULL,
    cause       TEXT NOT NULL CHECK (cause IN ('overdue', 'negative_balance', 'staff')),
    detail      TEXT NOT NULL,
    started_at  INTEGER NOT NULL,
    started_by  TEXT NOT NULL,
    lifted_at   INTEGER,
    lifted_by   TEXT,
    lift_reason TEXT
);
CREATE UNIQUE INDEX suspensions_in_force ON suspensions (party_id) WHERE lifted_at IS NULL;
CREATE INDEX suspensions_party ON suspensions (party_id, id);
