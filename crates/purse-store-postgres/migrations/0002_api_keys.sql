-- API keys: only a SHA-256 hash of each key is kept; the key itself is shown once.
CREATE TABLE api_keys (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    prefix      TEXT NOT NULL,
    hash        TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('operator', 'reseller', 'customer')),
    party_id    BIGINT REFERENCES parties (id),
    scope       TEXT NOT NULL CHECK (scope IN ('read', 'read_write')),
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT,
    CHECK ((role = 'operator') = (party_id IS NULL))
);
