-- A credential's lifecycle (docs/API.md, "Lifecycle"): revocation by the client that
-- issued it, and an optional end of validity set at issuance. Verification reads both
-- from the row on every request, so a revocation holds on every task at once.
--   revoked_at         when it was first revoked; a second revocation keeps it
--   revocation_reason  the reason given with the first revocation, if any
--   valid_until        the end of its validity (validUntil), NULL when it has none
-- Timestamps are kept at millisecond precision, as issued_at is, so the string one
-- service prints is the string the other prints later.
ALTER TABLE credentials
    ADD COLUMN IF NOT EXISTS revoked_at        TIMESTAMPTZ(3),
    ADD COLUMN IF NOT EXISTS revocation_reason TEXT,
    ADD COLUMN IF NOT EXISTS valid_until       TIMESTAMPTZ(3);

-- The issuance role revokes: it may UPDATE these two columns and no other (sql/004).
-- Like 004 this is a no-op where the roles do not exist (a developer's database).
DO $lifecycle$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'kc_issuance') THEN
        GRANT UPDATE (revoked_at, revocation_reason) ON credentials TO kc_issuance;
    END IF;
END
$lifecycle$;
