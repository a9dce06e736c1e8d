-- A usage invoice's due date (issue 24), fixed by the payment terms in force when it is first
-- sent, so a later change of terms moves no issued invoice's due date.
ALTER TABLE invoices ADD COLUMN due_at INTEGER;
