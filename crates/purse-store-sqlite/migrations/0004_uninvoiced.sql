-- Consumption posted since the account's last invoice (charges less reversed charges);
-- kept with the balance so that reading it costs nothing. Invoicing sets it back to zero.
ALTER TABLE balances ADD COLUMN uninvoiced INTEGER NOT NULL DEFAULT 0;
