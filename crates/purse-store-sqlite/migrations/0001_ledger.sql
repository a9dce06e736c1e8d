-- The ledger: currencies, parties, accounts, the immutable journal, holds, the outbox.
CREATE TABLE currencies (
    code  TEXT PRIMARY KEY,
    scale INTEGER NOT NULL CHECK (scale BETWEEN 0 AND 9)
);

CREATE TABLE parties (
    id          INTEGER PRIMARY KEY,
    client_id   TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('reseller', 'customer')),
    reseller_id INTEGER REFERENCES parties (id),
    billing     TEXT CHECK (billing IN ('prepaid', 'postpaid')),
    currency    TEXT REFERENCES currencies (code),
    wallet_id   INTEGER,
    created_at  INTEGER NOT NULL
);

-- An account's settings: written when they change, not on every posting.
CREATE TABLE accounts (
    id                    INTEGER PRIMARY KEY,
    client_id             TEXT UNIQUE,
    party_id              INTEGER REFERENCES parties (id),
    kind                  TEXT NOT NULL,
    system_role           TEXT,
    parent_id             INTEGER REFERENCES accounts (id),
    currency              TEXT NOT NULL REFERENCES currencies (code),
    status                TEXT NOT NULL,
    credit_limit          INTEGER NOT NULL CHECK (credit_limit >= 0),
    temp_increase         INTEGER,
    temp_valid_until      INTEGER,
    thresholds            TEXT NOT NULL,
    created_at            INTEGER NOT NULL
);
CREATE UNIQUE INDEX accounts_system ON accounts (currency, system_role) WHERE system_role IS NOT NULL;

-- An account's balance parts: narrow, because every batch rewrites the rows it touched.
CREATE TABLE balances (
    account_id        INTEGER PRIMARY KEY REFERENCES accounts (id),
    balance           INTEGER NOT NULL,
    reserved          INTEGER NOT NULL CHECK (reserved >= 0),
    children_balance  INTEGER NOT NULL,
    last_charge_at    INTEGER,
    last_transfer_id  INTEGER
);

-- The journal. Rows are never updated or deleted: the triggers below refuse it.
CREATE TABLE transfers (
    id                INTEGER PRIMARY KEY,
    client_id         TEXT NOT NULL,
    -- The 64-bit index key of client_id (purse_store::codec::client_key). The index is not
    -- unique because keys may collide; the engine checks client ids under its write lock.
    client_key        INTEGER NOT NULL,
    kind              TEXT NOT NULL,
    debit_account_id  INTEGER NOT NULL,
    credit_account_id INTEGER NOT NULL,
    amount            INTEGER NOT NULL CHECK (amount > 0),
    currency          TEXT NOT NULL,
    at                INTEGER NOT NULL,
    posted_at         INTEGER NOT NULL,
    service           TEXT,
    metadata          TEXT,
    hold_id           INTEGER,
    reverses_id       INTEGER,
    overdrawn         INTEGER NOT NULL,
    -- Each account's postings form a chain from balances.last_transfer_id backwards; with
    -- the balances after each posting, an account's journal and its balance at any past
    -- time are read without an index whose inserts would land all over the disk.
    debit_prev_id     INTEGER,
    credit_prev_id    INTEGER,
    debit_balance     INTEGER NOT NULL,
    credit_balance    INTEGER NOT NULL,
    CHECK (debit_account_id != credit_account_id)
);
CREATE INDEX transfers_client_key ON transfers (client_key);
CREATE UNIQUE INDEX transfers_reverses ON transfers (reverses_id) WHERE reverses_id IS NOT NULL;

CREATE TRIGGER transfers_are_immutable BEFORE UPDATE ON transfers
BEGIN SELECT RAISE(ABORT, 'journal rows are immutable: post a reversal instead'); END;
CREATE TRIGGER transfers_are_permanent BEFORE DELETE ON transfers
BEGIN SELECT RAISE(ABORT, 'journal rows are immutable: post a reversal instead'); END;

CREATE TABLE holds (
    id                  INTEGER PRIMARY KEY,
    client_id           TEXT NOT NULL UNIQUE,
    account_id          INTEGER NOT NULL REFERENCES accounts (id),
    amount              INTEGER NOT NULL CHECK (amount > 0),
    currency            TEXT NOT NULL,
    created_at          INTEGER NOT NULL,
    expires_at          INTEGER NOT NULL,
    state               TEXT NOT NULL,
    service             TEXT,
    metadata            TEXT,
    resolved_at         INTEGER,
    resolution_client_id TEXT,
    captured            INTEGER NOT NULL DEFAULT 0,
    capture_transfer_id INTEGER
);
CREATE INDEX holds_open ON holds (account_id, expires_at) WHERE state = 'open';
CREATE UNIQUE INDEX holds_release_client_id ON holds (resolution_client_id)
    WHERE resolution_client_id IS NOT NULL AND state = 'released';

-- Events written in the same transaction as the change that caused them.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    at              INTEGER NOT NULL,
    account_id      INTEGER NOT NULL,
    kind            TEXT NOT NULL,
    threshold       INTEGER,
    direction       TEXT,
    available_before INTEGER,
    available_after INTEGER,
    transfer_id     INTEGER,
    delivered_at    INTEGER
);

-- Bumped by every committed batch; see purse-store's write protocol.
CREATE TABLE ledger_epoch (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    epoch INTEGER NOT NULL
);
INSERT INTO ledger_epoch (id, epoch) VALUES (1, 0);
