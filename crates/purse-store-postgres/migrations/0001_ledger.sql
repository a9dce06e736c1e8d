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

CREATE TABLE accounts (
    id                    BIGINT PRIMARY KEY,
    client_id             TEXT UNIQUE,
    party_id              BIGINT REFERENCES parties (id),
    kind                  TEXT NOT NULL,
    system_role           TEXT,
    parent_id             BIGINT REFERENCES accounts (id),
    currency              TEXT NOT NULL REFERENCES currencies (code),
    status                TEXT NOT NULL,
    balance               BIGINT NOT NULL,
    reserved              BIGINT NOT NULL CHECK (reserved >= 0),
    credit_limit          BIGINT NOT NULL CHECK (credit_limit >= 0),
    temp_increase         BIGINT,
    temp_valid_until      BIGINT,
    children_balance      BIGINT NOT NULL,
    thresholds            TEXT NOT NULL,
    last_charge_at        BIGINT,
    created_at            BIGINT NOT NULL
);
CREATE UNIQUE INDEX accounts_system ON accounts (currency, system_role) WHERE system_role IS NOT NULL;

-- The journal. Rows are never updated or deleted: the triggers below refuse it.
CREATE TABLE transfers (
    id                BIGINT PRIMARY KEY,
    client_id         TEXT NOT NULL,
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
    CHECK (debit_account_id != credit_account_id)
);
CREATE UNIQUE INDEX transfers_client_id ON transfers (client_id);
CREATE INDEX transfers_debit ON transfers (debit_account_id, id);
CREATE INDEX transfers_credit ON transfers (credit_account_id, id);
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
CREATE INDEX holds_open ON holds (state) WHERE state = 'open';
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
