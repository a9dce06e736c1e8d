-- The ledger: currencies, parties, accounts, the immutable journal, holds, the outbox.
CREATE TABLE currencies (
    code  TEXT PRIMARY KEY,
    scale SMALLINT NOT NULL CHECK (scale BETWEEN 0 AND 9)
);

CREATE TABLE parties (
    id          BIGINT PRIMARY KEY,
    client_id   TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('reseller', 'customer')),
    reseller_id BIGINT REFERENCES parties (id),
    billing     TEXT CHECK (billing IN ('prepaid', 'postpaid')),
    currency    TEXT REFERENCES currencies (code),
    wallet_id   BIGINT,
    created_at  BIGINT NOT NULL
);

-- An account's settings: written when they change, not on every posting.
CREATE TABLE accounts (
    id                    BIGINT PRIMARY KEY,
    client_id             TEXT UNIQUE,
    party_id              BIGINT REFERENCES parties (id),
    kind                  TEXT NOT NULL,
    system_role           TEXT,
    parent_id             BIGINT REFERENCES accounts (id),
    currency              TEXT NOT NULL REFERENCES currencies (code),
    status                TEXT NOT NULL,
    credit_limit          BIGINT NOT NULL CHECK (credit_limit >= 0),
    temp_increase         BIGINT,
    temp_valid_until      BIGINT,
    thresholds            TEXT NOT NULL,
    created_at            BIGINT NOT NULL
);
CREATE UNIQUE INDEX accounts_system ON accounts (currency, system_role) WHERE system_role IS NOT NULL;

-- An account's balance parts: narrow, because every batch rewrites the rows it touched.
CREATE TABLE balances (
    account_id        BIGINT PRIMARY KEY REFERENCES accounts (id),
    balance           BIGINT NOT NULL,
    reserved          BIGINT NOT NULL CHECK (reserved >= 0),
    children_balance  BIGINT NOT NULL,
    last_charge_at    BIGINT,
    last_transfer_id  BIGINT
) WITH (fillfactor = 50); -- room on each page for HOT updates: no index entry per update

-- The journal. Rows are never updated or deleted: the triggers below refuse it.
CREATE TABLE transfers (
    id                BIGINT PRIMARY KEY,
    client_id         TEXT NOT NULL,
    -- The 64-bit index key of client_id (purse_store::codec::client_key). The index is not
    -- unique because keys may collide; the engine checks client ids under its write lock.
    client_key        BIGINT NOT NULL,
    kind              TEXT NOT NULL,
    debit_account_id  BIGINT NOT NULL,
    credit_account_id BIGINT NOT NULL,
    amount            BIGINT NOT NULL CHECK (amount > 0),
    currency          TEXT NOT NULL,
    at                BIGINT NOT NULL,
    posted_at         BIGINT NOT NULL,
    service           TEXT,
    metadata          TEXT,
    hold_id           BIGINT,
    reverses_id       BIGINT,
    overdrawn         BOOLEAN NOT NULL,
    -- Each account's postings form a chain from balances.last_transfer_id backwards; with
    -- the balances after each posting, an account's journal and its balance at any past
    -- time are read without an index whose inserts would land all over the disk.
    debit_prev_id     BIGINT,
    credit_prev_id    BIGINT,
    debit_balance     BIGINT NOT NULL,
    credit_balance    BIGINT NOT NULL,
    CHECK (debit_account_id != credit_account_id)
);
CREATE INDEX transfers_client_key ON transfers (client_key);
CREATE UNIQUE INDEX transfers_reverses ON transfers (reverses_id) WHERE reverses_id IS NOT NULL;

CREATE FUNCTION purse_refuse_journal_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'journal rows are immutable: post a reversal instead';
END $$;
CREATE TRIGGER transfers_are_immutable BEFORE UPDATE OR DELETE ON transfers
    FOR EACH ROW EXECUTE FUNCTION purse_refuse_journal_change();
CREATE TRIGGER transfers_are_permanent BEFORE TRUNCATE ON transfers
    FOR EACH STATEMENT EXECUTE FUNCTION purse_refuse_journal_change();

CREATE TABLE holds (
    id                  BIGINT PRIMARY KEY,
    client_id           TEXT NOT NULL UNIQUE,
    account_id          BIGINT NOT NULL REFERENCES accounts (id),
    amount              BIGINT NOT NULL CHECK (amount > 0),
    currency            TEXT NOT NULL,
    created_at          BIGINT NOT NULL,
    expires_at          BIGINT NOT NULL,
    state               TEXT NOT NULL,
    service             TEXT,
    metadata            TEXT,
    resolved_at         BIGINT,
    resolution_client_id TEXT,
    captured            BIGINT NOT NULL DEFAULT 0,
    capture_transfer_id BIGINT
);
CREATE INDEX holds_open ON holds (account_id, expires_at) WHERE state = 'open';
CREATE UNIQUE INDEX holds_release_client_id ON holds (resolution_client_id)
    WHERE resolution_client_id IS NOT NULL AND state = 'released';

-- Events written in the same transaction as the change that caused them.
CREATE TABLE outbox (
    id              BIGINT PRIMARY KEY,
    at              BIGINT NOT NULL,
    account_id      BIGINT NOT NULL,
    kind            TEXT NOT NULL,
    threshold       BIGINT,
    direction       TEXT,
    available_before BIGINT,
    available_after BIGINT,
    transfer_id     BIGINT,
    delivered_at    BIGINT
);

-- Bumped by every committed batch; see purse-store's write protocol.
CREATE TABLE ledger_epoch (
    id    BIGINT PRIMARY KEY CHECK (id = 1),
    epoch BIGINT NOT NULL
);
INSERT INTO ledger_epoch (id, epoch) VALUES (1, 0);
