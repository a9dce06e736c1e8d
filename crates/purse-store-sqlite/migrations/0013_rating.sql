-- Rating and real-time charging: rate plans (a currency, an owner), their rates (a service,
-- a prefix, in force from an instant), which party is given which plan, and sessions.
CREATE TABLE rate_plans (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    currency    TEXT NOT NULL REFERENCES currencies (code),
    owner_id    INTEGER REFERENCES parties (id),
    version     INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE TABLE rates (
    plan_id          INTEGER NOT NULL REFERENCES rate_plans (id),
    service          TEXT NOT NULL,
    prefix           TEXT NOT NULL,
    description      TEXT NOT NULL,
    price            INTEGER NOT NULL CHECK (price >= 0),
    connection_fee   INTEGER NOT NULL CHECK (connection_fee >= 0),
    minimum          INTEGER NOT NULL CHECK (minimum >= 0),
    first_increment  INTEGER NOT NULL CHECK (first_increment > 0),
    next_increment   INTEGER NOT NULL CHECK (next_increment > 0),
    unit             INTEGER NOT NULL CHECK (unit > 0),
    effective_from   INTEGER NOT NULL,
    PRIMARY KEY (plan_id, service, prefix, effective_from)
);
CREATE TABLE rate_assignments (
    party_id     INTEGER NOT NULL REFERENCES parties (id),
    role         TEXT NOT NULL CHECK (role IN ('pays', 'customers_default')),
    plan_id      INTEGER NOT NULL REFERENCES rate_plans (id),
    assigned_at  INTEGER NOT NULL,
    PRIMARY KEY (party_id, role)
);
CREATE TABLE charging_sessions (
    id             INTEGER PRIMARY KEY,
    client_tenant  INTEGER NOT NULL,
    client_key     TEXT NOT NULL,
    party_id       INTEGER NOT NULL REFERENCES parties (id),
    account_id     INTEGER NOT NULL REFERENCES accounts (id),
    status         TEXT NOT NULL CHECK (status IN ('authorizing', 'active', 'ended', 'expired', 'refused')),
    expires_at     INTEGER NOT NULL,
    version        INTEGER NOT NULL,
    state          TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    UNIQUE (client_tenant, client_key)
);
CREATE INDEX charging_sessions_party ON charging_sessions (party_id, id);
CREATE INDEX charging_sessions_expiry ON charging_sessions (status, expires_at);
-- Usage refused because no rate matched it: kept to be seen (and posted again once rated).
CREATE TABLE unrated_usage (
    party_id     INTEGER NOT NULL REFERENCES parties (id),
    client_id    TEXT NOT NULL,
    account_id   INTEGER NOT NULL,
    service      TEXT NOT NULL,
    destination  TEXT,
    quantity     INTEGER NOT NULL,
    at           INTEGER NOT NULL,
    reason       TEXT NOT NULL,
    recorded_at  INTEGER NOT NULL,
    PRIMARY KEY (party_id, client_id)
);
