-- A usage invoice's due date (issue 24), fixed by the payment terms in force when it is first
-- sent, so a later change of terms moves no issued invoice's due date.
ALTER TABLE invoices ADD COLUMN due_at INTEGER;
-- The scheduler looks for receipts whose tax (taxed at top-up) is not booked yet at every
-- step: a partial index keeps that a look at the few, not a scan of every receipt.
CREATE INDEX receipts_tax_unbooked ON receipts (id) WHERE tax <> 0 AND tax_booked_at IS NULL;
-- Each reminder's own text (issue 24), a template per step of a dunning policy; kept one
-- after the other, separated by the record separator (U+001E), which no text may hold.
ALTER TABLE dunning_policies ADD COLUMN reminder_texts TEXT NOT NULL DEFAULT '';
