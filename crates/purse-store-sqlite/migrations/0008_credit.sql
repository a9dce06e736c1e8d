-- Credit control: the credit limit history (written in the ledger's transaction), customer
-- classes, each party's credit policy, and the audit log of every settings change.
CREATE TABLE limit_changes (
    id           INTEGER PRIMARY KEY,
    account_id   INTEGER NOT NULL REFERENCES accounts (id),
    party_id     INTEGER,
    currency     TEXT NOT NULL,
    scale        INTEGER NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('permanent', 'temporary', 'revert')),
    at           INTEGER NOT NULL,
    recorded_at  INTEGER NOT NULL,
    old_limit    INTEGER NOT NULL,
    new_limit    INTEGER NOT NULL,
    old_increase INTEGER,
    old_until    INTEGER,
    new_increase INTEGER,
    new_until    INTEGER,
    changed_by   TEXT NOT NULL,
    reason       TEXT
);
CREATE INDEX limit_changes_account ON limit_changes (account_id, id);
CREATE INDEX limit_changes_party ON limit_changes (party_id, id);
-- A class groups customers under defaults: whether their subscriber accounts may transfer
-- to each other, and the maximum possible temporary increase.
CREATE TABLE customer_classes (
    id                INTEGER PRIMARY KEY,
    reseller_id       INTEGER REFERENCES parties (id),
    name              TEXT NOT NULL,
    transfers_allowed INTEGER NOT NULL,
    max_amount        TEXT,
    max_percent       INTEGER,
    max_days          INTEGER,
    updated_at        INTEGER NOT NULL
);
CREATE UNIQUE INDEX customer_classes_name ON customer_classes (COALESCE(reseller_id, 0), name);
-- A customer's class and transfers setting; a reseller's maximum possible increase.
CREATE TABLE credit_policies (
    party_id    INTEGER PRIMARY KEY REFERENCES parties (id),
    class_id    INTEGER REFERENCES customer_classes (id),
    transfers   TEXT NOT NULL CHECK (transfers IN ('class', 'yes', 'no')),
    max_amount  TEXT,
    max_percent INTEGER,
    max_days    INTEGER,
    updated_at  INTEGER NOT NULL
);
CREATE TABLE audit_log (
    id        INTEGER PRIMARY KEY,
    at        INTEGER NOT NULL,
    actor     TEXT NOT NULL,
    -- The party the setting belongs to (a customer or reseller); NULL for the operator's own.
    party_id  INTEGER,
    entity    TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    action    TEXT NOT NULL,
    before    TEXT,
    after     TEXT
);
CREATE INDEX audit_log_party ON audit_log (party_id, id);
-- The scheduler's revert finds the increases that ran out.
CREATE INDEX accounts_temp_valid_until ON accounts (temp_valid_until) WHERE temp_valid_until IS NOT NULL;
-- The effective subscriber-transfers setting the ledger checks (its own, else its class's).
ALTER TABLE parties ADD COLUMN subscriber_transfers INTEGER NOT NULL DEFAULT 0;
