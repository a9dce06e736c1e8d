-- A credit note's credit goes where staff choose (issue 24): off its invoice, to the balance,
-- kept as an unallocated credit that later invoices draw on (credit_applications), or given
-- back by a refund of one of the customer's payments. SQLite changes a CHECK by rebuilding.
CREATE TABLE credit_notes_new (
    id             INTEGER PRIMARY KEY,
    issuer_id      INTEGER NOT NULL,
    number         INTEGER NOT NULL,
    party_id       INTEGER NOT NULL,
    invoice_id     INTEGER NOT NULL REFERENCES invoices (id),
    amount         INTEGER NOT NULL CHECK (amount > 0),
    currency       TEXT NOT NULL,
    lines          TEXT NOT NULL,
    applied        TEXT NOT NULL CHECK (applied IN ('invoice', 'balance', 'unallocated', 'refund')),
    transfer_id    INTEGER NOT NULL,
    reason         TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    created_by     TEXT NOT NULL,
    tax_name       TEXT,
    tax_rate       INTEGER,
    tax            INTEGER NOT NULL DEFAULT 0,
    tax_inclusive  INTEGER NOT NULL DEFAULT 0,
    tax_carry      INTEGER NOT NULL DEFAULT 0,
    drawn          INTEGER NOT NULL DEFAULT 0,
    refund_id      INTEGER,
    UNIQUE (issuer_id, number)
);
INSERT INTO credit_notes_new (id, issuer_id, number, party_id, invoice_id, amount, currency, lines, applied, transfer_id,
                              reason, created_at, created_by, tax_name, tax_rate, tax, tax_inclusive, tax_carry)
SELECT id, issuer_id, number, party_id, invoice_id, amount, currency, lines, applied, transfer_id,
       reason, created_at, created_by, tax_name, tax_rate, tax, tax_inclusive, tax_carry FROM credit_notes;
DROP TABLE credit_notes;
ALTER TABLE credit_notes_new RENAME TO credit_notes;
CREATE INDEX credit_notes_invoice ON credit_notes (invoice_id);
CREATE INDEX credit_notes_party ON credit_notes (party_id, id);
CREATE TABLE credit_applications (
    id             INTEGER PRIMARY KEY,
    party_id       INTEGER NOT NULL,
    credit_note_id INTEGER NOT NULL REFERENCES credit_notes (id),
    invoice_id     INTEGER NOT NULL REFERENCES invoices (id),
    amount         INTEGER NOT NULL CHECK (amount > 0),
    at             INTEGER NOT NULL,
    released_at    INTEGER
);
CREATE INDEX credit_applications_invoice ON credit_applications (invoice_id, id);
CREATE INDEX credit_applications_note ON credit_applications (credit_note_id, id);
