-- The web portal: its users (passwords only as argon2id PHC strings), their server-side
-- sessions (only a SHA-256 hash of each session cookie), and failed logins by e-mail for
-- throttling (kept in the database so that every process sees the same count).
CREATE TABLE portal_users (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email          TEXT NOT NULL UNIQUE,
    name           TEXT NOT NULL,
    password_hash  TEXT NOT NULL,
    role           TEXT NOT NULL CHECK (role IN ('operator', 'reseller', 'customer')),
    party_id       BIGINT REFERENCES parties (id),
    scope          TEXT NOT NULL CHECK (scope IN ('read', 'read_write')),
    created_at     BIGINT NOT NULL,
    CHECK ((role = 'operator') = (party_id IS NULL))
);
CREATE TABLE portal_sessions (
    hash        TEXT PRIMARY KEY,
    user_id     BIGINT NOT NULL REFERENCES portal_users (id),
    csrf        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX portal_sessions_user ON portal_sessions (user_id);
CREATE TABLE login_failures (
    email     TEXT PRIMARY KEY,
    failures  INTEGER NOT NULL,
    last_at   BIGINT NOT NULL
);
