-- A credit note's credit goes where staff choose (issue 24): off its invoice, to the balance,
-- kept as an unallocated credit that later invoices draw on (credit_applications), or given
-- back by a refund of one of the customer's payments.
ALTER TABLE credit_notes DROP CONSTRAINT credit_notes_applied_check;
ALTER TABLE credit_notes ADD CONSTRAINT credit_notes_applied_check
    CHECK (applied IN ('invoice', 'balance', 'unallocated', 'refund'));
ALTER TABLE credit_notes ADD COLUMN drawn BIGINT NOT NULL DEFAULT 0;
ALTER TABLE credit_notes ADD COLUMN refund_id BIGINT;
CREATE TABLE credit_applications (
    id             BIGSERIAL PRIMARY KEY,
    party_id       BIGINT NOT NULL,
    credit_note_id BIGINT NOT NULL REFERENCES credit_notes (id),
    invoice_id     BIGINT NOT NULL REFERENCES invoices (id),
    amount         BIGINT NOT NULL CHECK (amount > 0),
    at             BIGINT NOT NULL,
    released_at    BIGINT
);
CREATE INDEX credit_applications_invoice ON credit_applications (invoice_id, id);
CREATE INDEX credit_applications_note ON credit_applications (credit_note_id, id);
