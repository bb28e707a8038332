-- API clients and their keys (docs/API.md, "Access control"). A key is stored only as
-- its SHA-256: keys are 256 random bits, so a fast hash cannot be reversed or guessed.
-- Tasks keep the clients in memory and reload them when api_clients_version.v changes;
-- the triggers below bump it in the same transaction as the change, so a task that
-- sees the new version also sees the change.
CREATE TABLE IF NOT EXISTS api_clients (
    id               BIGSERIAL PRIMARY KEY,
    name             TEXT NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    role             TEXT NOT NULL CHECK (role IN ('issuer', 'verifier')),
    -- The credential types an issuer may issue; empty: all of them.
    credential_types TEXT[] NOT NULL DEFAULT '{}',
    -- Requests per second per task; NULL: the task's CLIENT_RATE_LIMIT.
    rate_limit       INTEGER CHECK (rate_limit > 0),
    created_at       TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
    revoked_at       TIMESTAMPTZ
);

CREATE TABLE IF NOT EXISTS api_keys (
    key_sha256 BYTEA PRIMARY KEY CHECK (octet_length(key_sha256) = 32),
    client_id  BIGINT NOT NULL REFERENCES api_clients (id),
    created_at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
    revoked_at TIMESTAMPTZ
);

CREATE TABLE IF NOT EXISTS api_clients_version (
    one BOOLEAN PRIMARY KEY DEFAULT true CHECK (one),
    v   BIGINT NOT NULL
);
INSERT INTO api_clients_version (one, v) VALUES (true, 0) ON CONFLICT DO NOTHING;

CREATE OR REPLACE FUNCTION kc_api_clients_changed() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    UPDATE api_clients_version SET v = v + 1;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS api_clients_changed ON api_clients;
CREATE TRIGGER api_clients_changed AFTER INSERT OR UPDATE OR DELETE ON api_clients
    FOR EACH STATEMENT EXECUTE FUNCTION kc_api_clients_changed();
DROP TRIGGER IF EXISTS api_keys_changed ON api_keys;
CREATE TRIGGER api_keys_changed AFTER INSERT OR UPDATE OR DELETE ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION kc_api_clients_changed();

-- The client that issued each credential (its name, as the API shows it); NULL for
-- credentials issued with AUTH_MODE=off or before access control existed.
ALTER TABLE credentials ADD COLUMN IF NOT EXISTS issuer TEXT;
