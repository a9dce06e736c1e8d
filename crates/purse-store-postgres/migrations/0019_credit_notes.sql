-- Credit notes against issued usage invoices (issue 24): numbered without gaps per issuer
-- (CN-{issuer}-000001); applied to what the invoice still asks (its credited amount), or to
-- the customer's balance.
ALTER TABLE invoices ADD COLUMN credited BIGINT NOT NULL DEFAULT 0;
CREATE TABLE credit_notes (
    id          BIGSERIAL PRIMARY KEY,
    issuer_id   BIGINT NOT NULL,
    number      BIGINT NOT NULL,
    party_id    BIGINT NOT NULL,
    invoice_id  BIGINT NOT NULL REFERENCES invoices (id),
    amount      BIGINT NOT NULL CHECK (amount > 0),
    currency    TEXT NOT NULL,
    lines       TEXT NOT NULL,
    applied     TEXT NOT NULL CHECK (applied IN ('invoice', 'balance')),
    transfer_id BIGINT NOT NULL,
    reason      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    created_by  TEXT NOT NULL,
    UNIQUE (issuer_id, number)
);
CREATE INDEX credit_notes_invoice ON credit_notes (invoice_id);
CREATE INDEX credit_notes_party ON credit_notes (party_id, id);
CREATE TABLE credit_note_numbers (
    issuer_id BIGINT PRIMARY KEY,
    last      BIGINT NOT NULL
);
