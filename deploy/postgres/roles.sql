-- Least-privilege PostgreSQL roles for totpd (docs/deploy.md). Run once as a superuser:
--
--   psql -v ON_ERROR_STOP=1 -h DBHOST -U postgres -f deploy/postgres/roles.sql
--
-- then give both roles a password (\password totpd_migrate, \password totpd_app) or
-- client certificates. tests/cluster/test_roles.py runs this file.
--
--   totpd_migrate  owns the database and its schema: `totpd migrate` connects as it.
--   totpd_app      what `totpd serve` connects as: reads and writes rows, no DDL.

CREATE ROLE totpd_migrate LOGIN;
CREATE ROLE totpd_app LOGIN;
CREATE DATABASE totpd OWNER totpd_migrate ENCODING 'UTF8';
REVOKE ALL ON DATABASE totpd FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE totpd TO totpd_migrate;
GRANT CONNECT ON DATABASE totpd TO totpd_app;

\connect totpd
-- Only the owner creates objects in the schema (PostgreSQL 15's default, explicit for older ones).
ALTER SCHEMA public OWNER TO totpd_migrate;
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO totpd_app;
-- Every table and sequence a migration creates, now or in a later release, is readable
-- and writable row by row by the serving role; nothing else (no TRUNCATE, no REFERENCES).
ALTER DEFAULT PRIVILEGES FOR ROLE totpd_migrate IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO totpd_app;
ALTER DEFAULT PRIVILEGES FOR ROLE totpd_migrate IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO totpd_app;
