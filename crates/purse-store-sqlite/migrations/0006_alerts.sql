-- Low-balance notifications: profiles and their rules, parties' alert settings, the counters
-- of each rule, the outbox cursor, the notification log and its deliveries, webhook
-- endpoints, and the scheduler's job runs. The outbox learns refills (their amount).
ALTER TABLE outbox ADD COLUMN amount INTEGER;
CREATE TABLE profiles (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL,
    reseller_id   INTEGER REFERENCES parties (id),
    currency      TEXT NOT NULL REFERENCES currencies (code),
    sort_order    INTEGER NOT NULL,
    max_quantity  INTEGER NOT NULL CHECK (max_quantity >= 0),
    period_s      INTEGER NOT NULL CHECK (period_s >= 0),
    subject       TEXT NOT NULL,
    body          TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE TABLE profile_rules (
    profile_id    INTEGER NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
    kind          TEXT NOT NULL CHECK (kind IN ('user', 'client', 'inactivity')),
    threshold     INTEGER NOT NULL,
    notify        INTEGER NOT NULL,
    users         TEXT NOT NULL,
    emails        TEXT NOT NULL,
    inactivity_s  INTEGER NOT NULL,
    PRIMARY KEY (profile_id, kind)
) WITHOUT ROWID;
CREATE TABLE alert_settings (
    party_id      INTEGER PRIMARY KEY REFERENCES parties (id),
    profile_id    INTEGER,
    email         TEXT,
    alert_emails  TEXT NOT NULL,
    warning       TEXT NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE TABLE alert_counters (
    party_id  INTEGER NOT NULL,
    rule      TEXT NOT NULL,
    count     INTEGER NOT NULL,
    last_at   INTEGER,
    PRIMARY KEY (party_id, rule)
) WITHOUT ROWID;
CREATE TABLE alert_cursor (
    name   TEXT PRIMARY KEY,
    value  INTEGER NOT NULL
);
INSERT INTO alert_cursor (name, value) SELECT 'outbox', COALESCE(MAX(id), 0) FROM outbox;
CREATE TABLE notifications (
    id         INTEGER PRIMARY KEY,
    party_id   INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    threshold  INTEGER NOT NULL,
    available  INTEGER NOT NULL,
    currency   TEXT NOT NULL,
    at         INTEGER NOT NULL,
    subject    TEXT NOT NULL,
    body       TEXT NOT NULL,
    payload    TEXT NOT NULL
);
CREATE INDEX notifications_party ON notifications (party_id, id);
CREATE TABLE deliveries (
    id               INTEGER PRIMARY KEY,
    notification_id  INTEGER NOT NULL REFERENCES notifications (id),
    channel          TEXT NOT NULL CHECK (channel IN ('email', 'webhook')),
    target           TEXT NOT NULL,
    endpoint_id      INTEGER,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
    attempts         INTEGER NOT NULL,
    next_at          INTEGER NOT NULL,
    lease_until      INTEGER NOT NULL,
    last_error       TEXT,
    sent_at          INTEGER
);
CREATE INDEX deliveries_notification ON deliveries (notification_id);
CREATE INDEX deliveries_due ON deliveries (next_at) WHERE status = 'pending';
CREATE TABLE webhook_endpoints (
    id               INTEGER PRIMARY KEY,
    owner_id         INTEGER REFERENCES parties (id),
    url              TEXT NOT NULL,
    secret           TEXT NOT NULL,
    enabled          INTEGER NOT NULL,
    disabled_reason  TEXT,
    failures         INTEGER NOT NULL,
    created_at       INTEGER NOT NULL
);
CREATE TABLE job_runs (
    job          TEXT NOT NULL,
    key          TEXT NOT NULL,
    claimed_by   TEXT NOT NULL,
    lease_until  INTEGER NOT NULL,
    started_at   INTEGER NOT NULL,
    finished_at  INTEGER,
    summary      TEXT NOT NULL,
    PRIMARY KEY (job, key)
) WITHOUT ROWID;
