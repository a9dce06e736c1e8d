-- Usage invoices (periodic, from uninvoiced usage) join top-up invoices; payments (their
-- receipts) are allocated to them.
ALTER TABLE invoices DROP CONSTRAINT invoices_kind_check;
ALTER TABLE invoices ADD CONSTRAINT invoices_kind_check CHECK (kind IN ('top_up', 'usage'));
ALTER TABLE invoices DROP CONSTRAINT invoices_amount_check;
ALTER TABLE invoices ADD CONSTRAINT invoices_amount_check CHECK (amount >= 0);
ALTER TABLE invoices DROP CONSTRAINT invoices_status_check;
ALTER TABLE invoices ADD CONSTRAINT invoices_status_check CHECK (status IN ('open', 'partially_paid', 'paid', 'void'));
ALTER TABLE invoices DROP CONSTRAINT invoices_issuer_id_number_key;
ALTER TABLE invoices ADD CONSTRAINT invoices_kind_issuer_number_key UNIQUE (kind, issuer_id, number);
ALTER TABLE invoices ADD COLUMN period_start BIGINT;
ALTER TABLE invoices ADD COLUMN period_end BIGINT;
ALTER TABLE invoices ADD COLUMN subtotal BIGINT NOT NULL DEFAULT 0;
ALTER TABLE invoices ADD COLUMN carry_in BIGINT NOT NULL DEFAULT 0;
ALTER TABLE invoices ADD COLUMN carry_out BIGINT NOT NULL DEFAULT 0;
ALTER TABLE invoices ADD COLUMN allocated BIGINT NOT NULL DEFAULT 0;
ALTER TABLE invoices ADD CONSTRAINT invoices_allocated_check CHECK (allocated >= 0 AND allocated <= amount);
ALTER TABLE invoices ADD COLUMN voided_at BIGINT;
ALTER TABLE invoices ADD COLUMN void_reason TEXT;
ALTER TABLE invoices ADD COLUMN notified_at BIGINT;
UPDATE invoices SET subtotal = amount, notified_at = created_at;
CREATE INDEX invoices_unsent ON invoices (id) WHERE notified_at IS NULL;
-- The last usage invoice number each issuer (0: the operator) gave.
CREATE TABLE usage_invoice_numbers (
    issuer_id  BIGINT PRIMARY KEY,
    last       BIGINT NOT NULL
);
-- Each account's part of a usage invoice: its journal chain after after_transfer up to
-- and including through_transfer.
CREATE TABLE invoice_accounts (
    invoice_id        BIGINT NOT NULL REFERENCES invoices (id),
    account_id        BIGINT NOT NULL,
    amount            BIGINT NOT NULL,
    after_transfer    BIGINT,
    through_transfer  BIGINT,
    PRIMARY KEY (invoice_id, account_id)
);
CREATE INDEX invoice_accounts_account ON invoice_accounts (account_id, invoice_id);
-- A usage invoice's lines by service, kept the first time they are read from the journal.
CREATE TABLE invoice_lines (
    invoice_id  BIGINT NOT NULL REFERENCES invoices (id),
    service     TEXT NOT NULL,
    quantity    BIGINT NOT NULL,
    amount      BIGINT NOT NULL,
    PRIMARY KEY (invoice_id, service)
);
-- The end of the period the last usage invoice covered.
ALTER TABLE parties ADD COLUMN invoiced_until BIGINT;
ALTER TABLE receipts ADD COLUMN invoice_id BIGINT;
ALTER TABLE receipts ADD COLUMN allocated BIGINT NOT NULL DEFAULT 0;
ALTER TABLE receipts ADD CONSTRAINT receipts_allocated_check CHECK (allocated >= 0 AND allocated <= amount);
ALTER TABLE receipts ADD COLUMN reversed_at BIGINT;
-- Payments applied to invoices; released (never deleted) by a void or a reversal.
CREATE TABLE allocations (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    party_id        BIGINT NOT NULL REFERENCES parties (id),
    invoice_id      BIGINT NOT NULL REFERENCES invoices (id),
    receipt_id      BIGINT NOT NULL REFERENCES receipts (id),
    amount          BIGINT NOT NULL CHECK (amount > 0),
    at              BIGINT NOT NULL,
    released_at     BIGINT,
    release_reason  TEXT
);
CREATE INDEX allocations_party ON allocations (party_id, id);
CREATE INDEX allocations_invoice ON allocations (invoice_id, id);
CREATE INDEX allocations_receipt ON allocations (receipt_id, id);
-- A customer's billing cycle: the day each monthly cycle starts, in its time zone.
CREATE TABLE billing_settings (
    party_id        BIGINT PRIMARY KEY REFERENCES parties (id),
    cycle_day       BIGINT NOT NULL CHECK (cycle_day BETWEEN 1 AND 28),
    utc_offset_min  BIGINT NOT NULL CHECK (utc_offset_min BETWEEN -840 AND 840),
    updated_at      BIGINT NOT NULL
);
