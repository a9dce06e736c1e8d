-- Tax on every money document (issue 24): the carried rounding difference of each taxed
-- invoice and receipt, whether a customer's prepaid usage is taxed at invoice or at top-up,
-- the tax inside a receipt (taxed at top-up) and when it was booked, and a credit note's
-- net and tax.
ALTER TABLE invoices ADD COLUMN tax_carry INTEGER NOT NULL DEFAULT 0;
ALTER TABLE customer_tax ADD COLUMN taxed_at TEXT NOT NULL DEFAULT 'invoice' CHECK (taxed_at IN ('invoice', 'top_up'));
ALTER TABLE receipts ADD COLUMN tax_name TEXT;
ALTER TABLE receipts ADD COLUMN tax_rate INTEGER;
ALTER TABLE receipts ADD COLUMN tax INTEGER NOT NULL DEFAULT 0;
ALTER TABLE receipts ADD COLUMN tax_carry INTEGER NOT NULL DEFAULT 0;
ALTER TABLE receipts ADD COLUMN tax_booked_at INTEGER;
ALTER TABLE credit_notes ADD COLUMN tax_name TEXT;
ALTER TABLE credit_notes ADD COLUMN tax_rate INTEGER;
ALTER TABLE credit_notes ADD COLUMN tax INTEGER NOT NULL DEFAULT 0;
ALTER TABLE credit_notes ADD COLUMN tax_inclusive INTEGER NOT NULL DEFAULT 0;
ALTER TABLE credit_notes ADD COLUMN tax_carry INTEGER NOT NULL DEFAULT 0;
