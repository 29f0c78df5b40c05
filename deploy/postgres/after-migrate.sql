-- After the first `totpd migrate` (as totpd_migrate, which owns the table): the serving
-- role reads the schema version at start-up but never writes it.
REVOKE INSERT, UPDATE, DELETE ON alembic_version FROM totpd_app;
