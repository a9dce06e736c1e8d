-- The journal's client keys move out of an index on `transfers` into tables of their own
-- (issue 22). A random UUID's key lands anywhere in a big B-tree: 8,192 of them dirtied
-- nearly every page of the index per commit. Now a key above every key of `client_keys` (a
-- time-ordered id's) is appended there, and any other waits in the small `client_key_tail`
-- until a batch folds a contiguous run of the tail into `client_keys` (purse-store-sqlite's
-- `Tail`). Look-ups search both; new journal rows keep 0 in `transfers.client_key`, which
-- costs no byte. Keys may collide (the engine compares client ids under its write lock).
CREATE TABLE client_keys (
    client_key  INTEGER NOT NULL,
    transfer_id INTEGER NOT NULL,
    PRIMARY KEY (client_key, transfer_id)
) WITHOUT ROWID;
CREATE TABLE client_key_tail (
    client_key  INTEGER NOT NULL,
    transfer_id INTEGER NOT NULL,
    PRIMARY KEY (client_key, transfer_id)
) WITHOUT ROWID;
INSERT INTO client_keys (client_key, transfer_id) SELECT client_key, id FROM transfers ORDER BY client_key, id;
DROP INDEX transfers_client_key;
