-- A client id belongs to a tenant: '' the operator (and Purse itself), 'r12' reseller 12,
-- 'c34' customer 34. The tenant is a column beside the text as sent and a part of every
-- unique key, so two tenants never collide on an id. Ids stored before with the tenant as
-- a text prefix ('c34:x') move it into the column; their index key (client_key) is
-- defined to stay the same.
ALTER TABLE parties ADD COLUMN client_tenant TEXT NOT NULL DEFAULT '';
ALTER TABLE parties DROP CONSTRAINT parties_client_id_key;
ALTER TABLE parties ADD CONSTRAINT parties_client_id_key UNIQUE (client_tenant, client_id);
ALTER TABLE accounts ADD COLUMN client_tenant TEXT NOT NULL DEFAULT '';
ALTER TABLE accounts DROP CONSTRAINT accounts_client_id_key;
ALTER TABLE accounts ADD CONSTRAINT accounts_client_id_key UNIQUE (client_tenant, client_id);
ALTER TABLE holds ADD COLUMN client_tenant TEXT NOT NULL DEFAULT '';
ALTER TABLE holds ADD COLUMN resolution_client_tenant TEXT NOT NULL DEFAULT '';
ALTER TABLE holds DROP CONSTRAINT holds_client_id_key;
ALTER TABLE holds ADD CONSTRAINT holds_client_id_key UNIQUE (client_tenant, client_id);
DROP INDEX holds_release_client_id;
CREATE UNIQUE INDEX holds_release_client_id ON holds (resolution_client_tenant, resolution_client_id)
    WHERE resolution_client_id IS NOT NULL AND state = 'released';
ALTER TABLE transfers ADD COLUMN client_tenant TEXT NOT NULL DEFAULT '';

-- Which old ids carried a tenant: 'r' or 'c' and the id of a party of that kind, a colon,
-- then the text.
CREATE TEMP TABLE legacy_tenants ON COMMIT DROP AS
    SELECT 'r' || id AS prefix FROM parties WHERE kind = 'reseller'
    UNION ALL SELECT 'c' || id FROM parties WHERE kind = 'customer';

UPDATE parties SET client_tenant = split_part(client_id, ':', 1), client_id = substr(client_id, strpos(client_id, ':') + 1)
    WHERE strpos(client_id, ':') > 2 AND length(client_id) > strpos(client_id, ':')
      AND split_part(client_id, ':', 1) IN (SELECT prefix FROM legacy_tenants);
UPDATE accounts SET client_tenant = split_part(client_id, ':', 1), client_id = substr(client_id, strpos(client_id, ':') + 1)
    WHERE strpos(client_id, ':') > 2 AND length(client_id) > strpos(client_id, ':')
      AND split_part(client_id, ':', 1) IN (SELECT prefix FROM legacy_tenants);
UPDATE holds SET client_tenant = split_part(client_id, ':', 1), client_id = substr(client_id, strpos(client_id, ':') + 1)
    WHERE strpos(client_id, ':') > 2 AND length(client_id) > strpos(client_id, ':')
      AND split_part(client_id, ':', 1) IN (SELECT prefix FROM legacy_tenants);
UPDATE holds SET resolution_client_tenant = split_part(resolution_client_id, ':', 1),
                 resolution_client_id = substr(resolution_client_id, strpos(resolution_client_id, ':') + 1)
    WHERE strpos(resolution_client_id, ':') > 2 AND length(resolution_client_id) > strpos(resolution_client_id, ':')
      AND split_part(resolution_client_id, ':', 1) IN (SELECT prefix FROM legacy_tenants);

-- The journal is immutable; this one rewrite of its ids runs with the trigger lifted.
ALTER TABLE transfers DISABLE TRIGGER transfers_are_immutable;
UPDATE transfers SET client_tenant = split_part(client_id, ':', 1), client_id = substr(client_id, strpos(client_id, ':') + 1)
    WHERE strpos(client_id, ':') > 2 AND length(client_id) > strpos(client_id, ':')
      AND split_part(client_id, ':', 1) IN (SELECT prefix FROM legacy_tenants);
ALTER TABLE transfers ENABLE TRIGGER transfers_are_immutable;
