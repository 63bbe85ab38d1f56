-- Which process runs a run, and when it last said it was alive: a process that starts against a database
-- another live process uses closes only the runs whose process has stopped beating, never the live ones.
ALTER TABLE collection_runs ADD COLUMN instance TEXT;
ALTER TABLE collection_runs ADD COLUMN heartbeat_ms BIGINT;
