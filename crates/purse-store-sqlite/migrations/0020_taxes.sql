-- Taxes on usage invoices (issue 24): rates (a percentage in millionths, exclusive or
-- inclusive), a customer's rate, tax id and billing address, each invoice's tax as issued,
-- and where the tax a customer owes is booked.
CREATE TABLE tax_rates (
    id         INTEGER PRIMARY KEY,
    owner_id   INTEGER NOT NULL,
    name       TEXT NOT NULL,
    rate       INTEGER NOT NULL CHECK (rate > 0 AND rate <= 1000000),
    inclusive  INTEGER NOT NULL CHECK (inclusive IN (0, 1)),
    created_at INTEGER NOT NULL
);
CREATE TABLE customer_tax (
    party_id    INTEGER PRIMARY KEY,
    tax_rate_id INTEGER REFERENCES tax_rates (id),
    tax_id      TEXT NOT NULL,
    address     TEXT NOT NULL,
    updated_at  INTEGER NOT NULL
);
ALTER TABLE invoices ADD COLUMN tax_name TEXT;
ALTER TABLE invoices ADD COLUMN tax_rate INTEGER;
ALTER TABLE invoices ADD COLUMN tax_inclusive INTEGER NOT NULL DEFAULT 0;
ALTER TABLE invoices ADD COLUMN tax INTEGER NOT NULL DEFAULT 0;
ALTER TABLE invoices ADD COLUMN net INTEGER;

INSERT INTO accounts (id, client_id, party_id, kind, system_role, parent_id, currency, status, credit_limit,
                      temp_increase, temp_valid_until, thresholds, created_at, client_tenant)
SELECT (SELECT COALESCE(MAX(id), 0) FROM accounts) + ROW_NUMBER() OVER (ORDER BY c.code),
       NULL, NULL, 'system', 'tax_payable', NULL, c.code, 'open', 0, NULL, NULL, '', 0, ''
FROM currencies c
WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.currency = c.code AND a.system_role = 'tax_payable');
INSERT INTO balances (account_id, balance, reserved, children_balance, last_charge_at, last_transfer_id, uninvoiced)
SELECT id, 0, 0, 0, NULL, NULL, 0 FROM accounts
WHERE kind = 'system' AND system_role = 'tax_payable' AND id NOT IN (SELECT account_id FROM balances);
