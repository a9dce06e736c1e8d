-- A portal user can be disabled: it no longer logs in, and its sessions end.
ALTER TABLE portal_users ADD COLUMN disabled_at BIGINT;
