-- A client id belongs to a tenant: '' the operator (and Purse itself), 'r12' reseller 12,
-- 'c34' customer 34. The tenant is a column beside the text as sent and a part of every
-- unique key, so two tenants never collide on an id. Ids stored before with the tenant as
-- a text prefix ('c34:x') move it into the column; their index key (client_key) is
-- defined to stay the same. SQLite cannot change a UNIQUE constraint, so parties,
-- accounts and holds are rebuilt.
CREATE TABLE parties_new (
    id                   INTEGER PRIMARY KEY,
    client_tenant        TEXT NOT NULL DEFAULT '',
    client_id            TEXT NOT NULL,
    name                 TEXT NOT NULL,
    kind                 TEXT NOT NULL CHECK (kind IN ('reseller', 'customer')),
    reseller_id          INTEGER REFERENCES parties (id),
    billing              TEXT CHECK (billing IN ('prepaid', 'postpaid')),
    currency             TEXT REFERENCES currencies (code),
    wallet_id            INTEGER,
    created_at           INTEGER NOT NULL,
    subscriber_transfers INTEGER NOT NULL DEFAULT 0,
    invoiced_until       INTEGER,
    UNIQUE (client_tenant, client_id)
);
INSERT INTO parties_new (id, client_id, name, kind, reseller_id, billing, currency, wallet_id, created_at, subscriber_transfers, invoiced_until)
    SELECT id, client_id, name, kind, reseller_id, billing, currency, wallet_id, created_at, subscriber_transfers, invoiced_until FROM parties;
DROP TABLE parties;
ALTER TABLE parties_new RENAME TO parties;
CREATE INDEX parties_reseller ON parties (reseller_id) WHERE reseller_id IS NOT NULL;

CREATE TABLE accounts_new (
    id                    INTEGER PRIMARY KEY,
    client_tenant         TEXT NOT NULL DEFAULT '',
    client_id             TEXT,
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
    created_at            INTEGER NOT NULL,
    UNIQUE (client_tenant, client_id)
);
INSERT INTO accounts_new (id, client_id, party_id, kind, system_role, parent_id, currency, status, credit_limit, temp_increase, temp_valid_until, thresholds, created_at)
    SELECT id, client_id, party_id, kind, system_role, parent_id, currency, status, credit_limit, temp_increase, temp_valid_until, thresholds, created_at FROM accounts;
DROP TABLE accounts;
ALTER TABLE accounts_new RENAME TO accounts;
CREATE UNIQUE INDEX accounts_system ON accounts (currency, system_role) WHERE system_role IS NOT NULL;
CREATE INDEX accounts_party ON accounts (party_id) WHERE party_id IS NOT NULL;
CREATE INDEX accounts_temp_valid_until ON accounts (temp_valid_until) WHERE temp_valid_until IS NOT NULL;

CREATE TABLE holds_new (
    id                       INTEGER PRIMARY KEY,
    client_tenant            TEXT NOT NULL DEFAULT '',
    client_id                TEXT NOT NULL,
    account_id               INTEGER NOT NULL REFERENCES accounts (id),
    amount                   INTEGER NOT NULL CHECK (amount > 0),
    currency                 TEXT NOT NULL,
    created_at               INTEGER NOT NULL,
    expires_at               INTEGER NOT NULL,
    state                    TEXT NOT NULL,
    service                  TEXT,
    metadata                 TEXT,
    resolved_at              INTEGER,
    resolution_client_tenant TEXT NOT NULL DEFAULT '',
    resolution_client_id     TEXT,
    captured                 INTEGER NOT NULL DEFAULT 0,
    capture_transfer_id      INTEGER,
    UNIQUE (client_tenant, client_id)
);
INSERT INTO holds_new (id, client_id, account_id, amount, currency, created_at, expires_at, state, service, metadata, resolved_at, resolution_client_id, captured, capture_transfer_id)
    SELECT id, client_id, account_id, amount, currency, created_at, expires_at, state, service, metadata, resolved_at, resolution_client_id, captured, capture_transfer_id FROM holds;
DROP TABLE holds;
ALTER TABLE holds_new RENAME TO holds;
CREATE INDEX holds_open ON holds (account_id, expires_at) WHERE state = 'open';
CREATE UNIQUE INDEX holds_release_client_id ON holds (resolution_client_tenant, resolution_client_id)
    WHERE resolution_client_id IS NOT NULL AND state = 'released';

ALTER TABLE transfers ADD COLUMN client_tenant TEXT NOT NULL DEFAULT '';

-- Which old ids carried a tenant: 'r' or 'c', 1 to 18 digits naming a party of that kind,
-- a colon, then the text.
CREATE TEMP TABLE legacy_tenants AS
    SELECT 'r' || id AS prefix, id FROM parties WHERE kind = 'reseller'
    UNION ALL SELECT 'c' || id, id FROM parties WHERE kind = 'customer';

UPDATE parties SET client_tenant = substr(client_id, 1, instr(client_id, ':') - 1), client_id = substr(client_id, instr(client_id, ':') + 1)
    WHERE instr(client_id, ':') > 2 AND length(client_id) > instr(client_id, ':')
      AND substr(client_id, 1, instr(client_id, ':') - 1) IN (SELECT prefix FROM legacy_tenants);
UPDATE accounts SET client_tenant = substr(client_id, 1, instr(client_id, ':') - 1), client_id = substr(client_id, instr(client_id, ':') + 1)
    WHERE instr(client_id, ':') > 2 AND length(client_id) > instr(client_id, ':')
      AND substr(client_id, 1, instr(client_id, ':') - 1) IN (SELECT prefix FROM legacy_tenants);
UPDATE holds SET client_tenant = substr(client_id, 1, instr(client_id, ':') - 1), client_id = substr(client_id, instr(client_id, ':') + 1)
    WHERE instr(client_id, ':') > 2 AND length(client_id) > instr(client_id, ':')
      AND substr(client_id, 1, instr(client_id, ':') - 1) IN (SELECT prefix FROM legacy_tenants);
UPDATE holds SET resolution_client_tenant = substr(resolution_client_id, 1, instr(resolution_client_id, ':') - 1),
                 resolution_client_id = substr(resolution_client_id, instr(resolution_client_id, ':') + 1)
    WHERE instr(resolution_client_id, ':') > 2 AND length(resolution_client_id) > instr(resolution_client_id, ':')
      AND substr(resolution_client_id, 1, instr(resolution_client_id, ':') - 1) IN (SELECT prefix FROM legacy_tenants);

-- The journal is immutable; this one rewrite of its ids runs with the trigger lifted.
DROP TRIGGER transfers_are_immutable;
UPDATE transfers SET client_tenant = substr(client_id, 1, instr(client_id, ':') - 1), client_id = substr(client_id, instr(client_id, ':') + 1)
    WHERE instr(client_id, ':') > 2 AND length(client_id) > instr(client_id, ':')
      AND substr(client_id, 1, instr(client_id, ':') - 1) IN (SELECT prefix FROM legacy_tenants);
CREATE TRIGGER transfers_are_immutable BEFORE UPDATE ON transfers
BEGIN SELECT RAISE(ABORT, 'journal rows are immutable: post a reversal instead'); END;
DROP TABLE legacy_tenants;
