-- Balances written by recent batches (issue 22). A batch used to rewrite every touched row of
-- `balances` in place: 8,192 charges over a million accounts dirtied nearly 8,000 pages per
-- commit. Now a batch writes the rows it changed into this small table, and folds a run of
-- the oldest-written accounts (by account id, a contiguous range, so a handful of pages) back
-- into the stored balances in the same transaction. Everything still commits atomically;
-- nothing is recovered after a crash.
ALTER TABLE balances RENAME TO balances_base;
CREATE TABLE balance_tail (
    account_id        INTEGER PRIMARY KEY,
    balance           INTEGER NOT NULL,
    reserved          INTEGER NOT NULL CHECK (reserved >= 0),
    children_balance  INTEGER NOT NULL,
    last_charge_at    INTEGER,
    last_transfer_id  INTEGER,
    uninvoiced        INTEGER NOT NULL,
    -- NULL: the grants stored in balances_base still hold.
    grants            TEXT
);
-- What every reader sees: the newer row when an account has one.
CREATE VIEW balances AS
SELECT b.account_id AS account_id,
       iif(t.account_id IS NULL, b.balance, t.balance) AS balance,
       iif(t.account_id IS NULL, b.reserved, t.reserved) AS reserved,
       iif(t.account_id IS NULL, b.children_balance, t.children_balance) AS children_balance,
       iif(t.account_id IS NULL, b.last_charge_at, t.last_charge_at) AS last_charge_at,
       iif(t.account_id IS NULL, b.last_transfer_id, t.last_transfer_id) AS last_transfer_id,
       iif(t.account_id IS NULL, b.uninvoiced, t.uninvoiced) AS uninvoiced,
       coalesce(t.grants, b.grants) AS grants
FROM balances_base b LEFT JOIN balance_tail t ON t.account_id = b.account_id;
