-- Each kind's evaluations: how many there have been (seq) and when the last one was. An open finding whose
-- seen_seq is set was produced, unchanged, by every evaluation of its kind since its row was written at
-- evaluation seen_seq: its last sighting is its kind's last evaluation, and its evaluations in a row grow with
-- its kind's count, so an evaluation rewrites only the rows that changed. Rows written before this have no
-- seen_seq: the next evaluation writes them once.
CREATE TABLE finding_evaluations (
    kind  TEXT PRIMARY KEY,
    seq   BIGINT NOT NULL,
    at_ms BIGINT NOT NULL
);

ALTER TABLE findings ADD COLUMN seen_seq BIGINT;
