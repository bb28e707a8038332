-- Idempotency keys (docs/API.md, "Idempotency-Key"): a retry of POST /issuance/credentials
-- with the same Idempotency-Key and body gets the first answer again. One row per
-- (client, key): the client is the API client's name ('' with AUTH_MODE=off, a name no
-- client can have), the fingerprint the SHA-256 of the body, the credential the id the
-- first request issued under. The row is written by the statement that inserts the
-- credential, and gates it, so a retry after a 503 finds both or neither. A row whose
-- credential does not exist is a request that was answered 409 (its triple was taken):
-- a retry runs again and gets the 409 again. No foreign key, for that reason.
-- Rows are kept 24 h: a row older than that is taken over by the next request with its
-- key, and each issuance task deletes old rows in bounded batches every few minutes.
CREATE TABLE IF NOT EXISTS idempotency_keys (
    client          TEXT NOT NULL,
    idempotency_key TEXT NOT NULL CHECK (octet_length(idempotency_key) BETWEEN 1 AND 255),
    fingerprint     BYTEA NOT NULL CHECK (octet_length(fingerprint) = 32),
    credential_id   UUID NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (client, idempotency_key)
);

CREATE INDEX IF NOT EXISTS idx_idempotency_keys_created_at ON idempotency_keys (created_at);

-- As in sql/004 and 005: where the roles exist, kc_migrator owns the table and the
-- issuance role may read, insert, take over an expired key (UPDATE of the three columns
-- it rewrites) and delete old keys; verification gets nothing.
DO $idempotency$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'kc_issuance') THEN
        IF pg_has_role(current_user, 'kc_migrator', 'USAGE') THEN
            ALTER TABLE idempotency_keys OWNER TO kc_migrator;
        END IF;
        GRANT SELECT, INSERT, DELETE ON idempotency_keys TO kc_issuance;
        GRANT UPDATE (fingerprint, credential_id, created_at) ON idempotency_keys TO kc_issuance;
    END IF;
END
$idempotency$;
