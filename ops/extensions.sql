-- The extensions of a Guardian database, run as a superuser (the app role is not one):
--   psql -v role=guardian -d DBNAME -f ops/extensions.sql
-- Idempotent. pg_partman lives in its own schema; the app role manages the `pings` partitions
-- through it (server/positions/partitions.py), so it may use that schema and its objects.
CREATE EXTENSION IF NOT EXISTS postgis;
CREATE SCHEMA IF NOT EXISTS partman;
CREATE EXTENSION IF NOT EXISTS pg_partman SCHEMA partman;
GRANT ALL ON SCHEMA partman TO :"role";
GRANT ALL ON ALL TABLES IN SCHEMA partman TO :"role";
GRANT ALL ON ALL SEQUENCES IN SCHEMA partman TO :"role";
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA partman TO :"role";
GRANT EXECUTE ON ALL PROCEDURES IN SCHEMA partman TO :"role";
