-- The web portal: its users (passwords only as argon2id PHC strings), their server-side
-- sessions (only a SHA-256 hash of each session cookie), and failed logins by e-mail for
-- throttling (kept in the database so that every process sees the same count).
CREATE TABLE portal_users (
    id             INTEGER PRIMARY KEY,
    email          TEXT NOT NULL UNIQUE,
    name           TEXT NOT NULL,
    password_hash  TEXT NOT NULL,
    role           TEXT NOT NULL CHECK (role IN ('operator', 'reseller', 'customer')),
    party_id       INTEGER REFERENCES parties (id),
    scope          TEXT NOT NULL CHECK (scope IN ('read', 'read_write')),
    created_at     INTEGER NOT NULL,
    CHECK ((role = 'operator') = (party_id IS NULL))
);
CREATE TABLE portal_sessions (
    hash        TEXT PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES portal_users (id),
    csrf        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX portal_sessions_user ON portal_sessions (user_id);
CREATE TABLE login_failures (
    email     TEXT PRIMARY KEY,
    failures  INTEGER NOT NULL,
    last_at   INTEGER NOT NULL
) WITHOUT ROWID;
