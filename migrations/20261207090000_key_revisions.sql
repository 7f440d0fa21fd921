-- Key revisions: edges take virtual keys as incremental changes (a million keys do not fit in
-- every snapshot), so each key records the config version of the transaction that last changed
-- it. The revision is taken while that transaction holds the config_version row lock (it bumps
-- the version), so revisions become visible in the order they were taken: a reader that sees
-- config version V sees every key change with revision <= V, and none is committed behind it.

ALTER TABLE virtual_keys ADD COLUMN revision BIGINT NOT NULL DEFAULT 0;
UPDATE virtual_keys SET revision = (SELECT version FROM config_version);
CREATE INDEX virtual_keys_revision ON virtual_keys (revision, id);
COMMENT ON COLUMN virtual_keys.revision IS
    'Config version of the transaction that last inserted or updated the key; edges hold keys up to a revision.';

-- Bumps the config version once per transaction (a bulk insert of a million keys is one
-- version) and stamps every key the transaction writes with it.
CREATE FUNCTION tollgate_stamp_key_revision() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
DECLARE
    stamp BIGINT;
BEGIN
    IF current_setting('tollgate.key_revision_txid', true) IS DISTINCT FROM txid_current()::text THEN
        stamp := tollgate_bump_config_version();
        PERFORM set_config('tollgate.key_revision_txid', txid_current()::text, true);
    ELSE
        SELECT version INTO stamp FROM config_version;
    END IF;
    NEW.revision := stamp;
    RETURN NEW;
END;
$$;

CREATE TRIGGER virtual_keys_revision
    BEFORE INSERT OR UPDATE ON virtual_keys
    FOR EACH ROW EXECUTE FUNCTION tollgate_stamp_key_revision();

-- Keys are revoked, never deleted: a deleted key would never reach edges as a removal.
CREATE FUNCTION tollgate_refuse_key_delete() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'virtual keys are revoked, not deleted (edges would never learn of the deletion)';
END;
$$;

CREATE TRIGGER virtual_keys_no_delete
    BEFORE DELETE ON virtual_keys
    FOR EACH ROW EXECUTE FUNCTION tollgate_refuse_key_delete();

-- The key revision each edge last ACKed, beside the config version it runs.
ALTER TABLE edges ADD COLUMN key_revision BIGINT NOT NULL DEFAULT 0;
