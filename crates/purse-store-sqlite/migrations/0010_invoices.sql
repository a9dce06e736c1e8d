-- Usage invoices (periodic, from uninvoiced usage) join top-up invoices; payments (their
-- receipts) are allocated to them. SQLite cannot change a CHECK, so invoices is rebuilt.
CREATE TABLE invoices_new (
    id            INTEGER PRIMARY KEY,
    issuer_id     INTEGER NOT NULL,
    number        INTEGER NOT NULL,
    party_id      INTEGER NOT NULL REFERENCES parties (id),
    kind          TEXT NOT NULL CHECK (kind IN ('top_up', 'usage')),
    amount        INTEGER NOT NULL CHECK (amount >= 0),
    currency      TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('open', 'partially_paid', 'paid', 'void')),
    created_at    INTEGER NOT NULL,
    paid_at       INTEGER,
    recharge_id   INTEGER,
    transfer_id   INTEGER,
    period_start  INTEGER,
    period_end    INTEGER,
    subtotal      INTEGER NOT NULL DEFAULT 0,
    carry_in      INTEGER NOT NULL DEFAULT 0,
    carry_out     INTEGER NOT NULL DEFAULT 0,
    allocated     INTEGER NOT NULL DEFAULT 0 CHECK (allocated >= 0 AND allocated <= amount),
    voided_at     INTEGER,
    void_reason   TEXT,
    notified_at   INTEGER,
    UNIQUE (kind, issuer_id, number)
);
INSERT INTO invoices_new (id, issuer_id, number, party_id, kind, amount, currency, status, created_at, paid_at, recharge_id, transfer_id, subtotal, notified_at)
    SELECT id, issuer_id, number, party_id, kind, amount, currency, status, created_at, paid_at, recharge_id, transfer_id, amount, created_at FROM invoices;
DROP TABLE invoices;
ALTER TABLE invoices_new RENAME TO invoices;
CREATE UNIQUE INDEX invoices_open_top_up ON invoices (party_id) WHERE kind = 'top_up' AND status = 'open';
CREATE INDEX invoices_party ON invoices (party_id, id);
CREATE INDEX invoices_unsent ON invoices (id) WHERE notified_at IS NULL;
-- The last usage invoice number each issuer (0: the operator) gave.
CREATE TABLE usage_invoice_numbers (
    issuer_id  INTEGER PRIMARY KEY,
    last       INTEGER NOT NULL
);
-- Each account's part of a usage invoice: its journal chain after after_transfer up to
-- and including through_transfer.
CREATE TABLE invoice_accounts (
    invoice_id        INTEGER NOT NULL REFERENCES invoices (id),
    account_id        INTEGER NOT NULL,
    amount            INTEGER NOT NULL,
    after_transfer    INTEGER,
    through_transfer  INTEGER,
    PRIMARY KEY (invoice_id, account_id)
);
CREATE INDEX invoice_accounts_account ON invoice_accounts (account_id, invoice_id);
-- A usage invoice's lines by service, kept the first time they are read from the journal.
CREATE TABLE invoice_lines (
    invoice_id  INTEGER NOT NULL REFERENCES invoices (id),
    service     TEXT NOT NULL,
    quantity    INTEGER NOT NULL,
    amount      INTEGER NOT NULL,
    PRIMARY KEY (invoice_id, service)
);
-- The end of the period the last usage invoice covered.
ALTER TABLE parties ADD COLUMN invoiced_until INTEGER;
ALTER TABLE receipts ADD COLUMN invoice_id INTEGER;
ALTER TABLE receipts ADD COLUMN allocated INTEGER NOT NULL DEFAULT 0 CHECK (allocated >= 0 AND allocated <= amount);
ALTER TABLE receipts ADD COLUMN reversed_at INTEGER;
-- Payments applied to invoices; released (never deleted) by a void or a reversal.
CREATE TABLE allocations (
    id              INTEGER PRIMARY KEY,
    party_id        INTEGER NOT NULL REFERENCES parties (id),
    invoice_id      INTEGER NOT NULL REFERENCES invoices (id),
    receipt_id      INTEGER NOT NULL REFERENCES receipts (id),
    amount          INTEGER NOT NULL CHECK (amount > 0),
    at              INTEGER NOT NULL,
    released_at     INTEGER,
    release_reason  TEXT
);
CREATE INDEX allocations_party ON allocations (party_id, id);
CREATE INDEX allocations_invoice ON allocations (invoice_id, id);
CREATE INDEX allocations_receipt ON allocations (receipt_id, id);
-- A customer's billing cycle: the day each monthly cycle starts, in its time zone.
CREATE TABLE billing_settings (
    party_id        INTEGER PRIMARY KEY REFERENCES parties (id),
    cycle_day       INTEGER NOT NULL CHECK (cycle_day BETWEEN 1 AND 28),
    utc_offset_min  INTEGER NOT NULL CHECK (utc_offset_min BETWEEN -840 AND 840),
    updated_at      INTEGER NOT NULL
);
