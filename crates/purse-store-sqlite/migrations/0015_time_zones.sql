-- A customer's time zone by its IANA name (`Europe/Berlin`), whose offset changes with
-- daylight saving; NULL for settings saved before, which keep their fixed offset.
ALTER TABLE billing_settings ADD COLUMN time_zone TEXT CHECK (time_zone IS NULL OR length(time_zone) BETWEEN 1 AND 64);
