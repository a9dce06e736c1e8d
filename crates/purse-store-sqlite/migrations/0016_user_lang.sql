-- The portal language a user chose (`en`, `ar`); NULL: the browser's.
ALTER TABLE portal_users ADD COLUMN lang TEXT CHECK (lang IS NULL OR lang IN ('en', 'ar'));
