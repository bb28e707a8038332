-- Credentials issued by the issuance service and looked up by the verification service.
-- issued_at is kept at millisecond precision so the value issuance returns is the one
-- verification returns later (the API prints milliseconds).
CREATE TABLE IF NOT EXISTS credentials (
    id              UUID PRIMARY KEY,
    name            VARCHAR(255) NOT NULL,
    email           VARCHAR(255) NOT NULL,
    credential_type VARCHAR(100) NOT NULL,
    metadata        JSONB,
    issued_by       VARCHAR(255) NOT NULL,
    issued_at       TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT unique_credential UNIQUE (name, email, credential_type)
);

CREATE INDEX IF NOT EXISTS idx_credentials_email ON credentials (email);
CREATE INDEX IF NOT EXISTS idx_credentials_type ON credentials (credential_type);
CREATE INDEX IF NOT EXISTS idx_credentials_issued_at ON credentials (issued_at);
