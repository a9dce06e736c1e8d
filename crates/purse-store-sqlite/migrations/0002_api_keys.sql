-- API keys: only a SHA-256 hash of each key is kept; the key itself is shown once.
CREATE TABLE api_keys (
    id          INTEGER PRIMARY KEY,
    prefix      TEXT NOT NULL,
    hash        TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('operator', 'reseller', 'customer')),
    party_id    INTEGER REFERENCES parties (id),
    scope       TEXT NOT NULL CHECK (scope IN ('read', 'read_write')),
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER,
    CHECK ((role = 'operator') = (party_id IS NULL))
);
