-- Least-privilege database roles (docs/DEPLOYMENT.md, "Database roles"). Three
-- NOLOGIN group roles; login users are made members of them, never given privileges
-- of their own:
--   kc_migrator      owns the schema and its objects: runs the migrations and the
--                    `clients add/revoke/list` one-offs (it writes api_clients/api_keys)
--   kc_issuance      the issuance service: SELECT, INSERT on credentials; SELECT on
--                    the api_* tables it loads the API clients from
--   kc_verification  the verification service: SELECT only, on the same tables
-- Roles are cluster-wide, so they are created only when missing, only by a user that
-- may (superuser or CREATEROLE: the RDS master user may), and a concurrent migration
-- of another schema creating them first is not an error. A user that may not create
-- them leaves this migration a no-op (a NOTICE says so), as on a developer's database.
-- The GRANTs are per schema: every schema that migrates gets its own.
-- No default privileges: a later migration that adds a table grants on it itself, so
-- a new table is never readable by a service by accident.
DO $roles$
DECLARE
    r text;
    privileged boolean;
BEGIN
    SELECT rolsuper OR rolcreaterole INTO privileged FROM pg_roles WHERE rolname = current_user;
    FOREACH r IN ARRAY ARRAY['kc_migrator', 'kc_issuance', 'kc_verification'] LOOP
        CONTINUE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r);
        IF NOT privileged THEN
            RAISE NOTICE 'role % is missing and % may not create roles: grants skipped', r, current_user;
            RETURN;
        END IF;
        BEGIN
            EXECUTE format('CREATE ROLE %I NOLOGIN', r);
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL; -- another schema's migration created it at the same moment
        END;
    END LOOP;

    -- A migrating user that is no superuser (the RDS master user) joins kc_migrator,
    -- so that it may hand its objects over and, later, alter them.
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
       AND NOT pg_has_role(current_user, 'kc_migrator', 'USAGE') THEN
        EXECUTE format('GRANT kc_migrator TO %I', current_user);
    END IF;

    -- kc_migrator owns the schema and everything the migrations made in it (an owned
    -- sequence follows its table; functions are moved explicitly).
    EXECUTE format('ALTER SCHEMA %I OWNER TO kc_migrator', current_schema());
    ALTER TABLE schema_migrations OWNER TO kc_migrator;
    ALTER TABLE credentials OWNER TO kc_migrator;
    ALTER TABLE api_clients OWNER TO kc_migrator;
    ALTER TABLE api_keys OWNER TO kc_migrator;
    ALTER TABLE api_clients_version OWNER TO kc_migrator;
    ALTER FUNCTION kc_before_deadline(timestamptz) OWNER TO kc_migrator;
    ALTER FUNCTION kc_api_clients_changed() OWNER TO kc_migrator;

    EXECUTE format('GRANT USAGE ON SCHEMA %I TO kc_issuance, kc_verification', current_schema());
    GRANT SELECT, INSERT ON credentials TO kc_issuance;
    GRANT SELECT ON credentials TO kc_verification;
    GRANT SELECT ON api_clients, api_keys, api_clients_version TO kc_issuance, kc_verification;
    -- Functions are executable by PUBLIC unless revoked: keep only what the services call.
    REVOKE EXECUTE ON FUNCTION kc_before_deadline(timestamptz) FROM PUBLIC;
    GRANT EXECUTE ON FUNCTION kc_before_deadline(timestamptz) TO kc_issuance;
    REVOKE EXECUTE ON FUNCTION kc_api_clients_changed() FROM PUBLIC;
END
$roles$;
