-- Credit notes against issued usage invoices (issue 24): numbered without gaps per issuer
-- (CN-{issuer}-000001); applied to what the invoice still asks (its credited amount), or to
-- the customer's balance.
ALTER TABLE invoices ADD COLUMN credited INTEGER NOT NULL DEFAULT 0;
CREATE TABLE credit_notes (
    id          INTEGER PRIMARY KEY,
    issuer_id   INTEGER NOT NULL,
    number      INTEGER NOT NULL,
    party_id    INTEGER NOT NULL,
    invoice_id  INTEGER NOT NULL REFERENCES invoices (id),
    amount      INTEGER NOT NULL CHECK (amount > 0),
    currency    TEXT NOT NULL,
    lines       TEXT NOT NULL,
    applied     TEXT NOT NULL CHECK (applied IN ('invoice', 'balance')),
    transfer_id INTEGER NOT NULL,
    reason      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    created_by  TEXT NOT NULL,
    UNIQUE (issuer_id, number)
);
CREATE INDEX credit_notes_invoice ON credit_notes (invoice_id);
CREATE INDEX credit_notes_party ON credit_notes (party_id, id);
CREATE TABLE credit_note_numbers (
    issuer_id INTEGER PRIMARY KEY,
    last      INTEGER NOT NULL
);
