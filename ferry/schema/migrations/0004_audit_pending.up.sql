-- Audit records written with the work they describe and not yet numbered into the log. A step
-- (a bundle sent, received or acknowledged) inserts its records here in its own transaction,
-- which takes no lock other writers wait for; the sequencer (package audit) then moves them into
-- ferry_audit in pid order, giving each its ID in the log and its leaf hash, under the lock of
-- ferry_audit_head. The columns are ferry_audit's, without the ID and leaf hash.
CREATE TABLE ferry_audit_pending (
    pid         {{id}},
    at          {{ts}} NOT NULL,
    node        TEXT NOT NULL,
    actor       TEXT NOT NULL,
    event       TEXT NOT NULL,
    result      TEXT NOT NULL,
    bundle_id   TEXT NOT NULL DEFAULT '',
    lane        TEXT NOT NULL DEFAULT '',
    first_seq   BIGINT NOT NULL DEFAULT 0,
    last_seq    BIGINT NOT NULL DEFAULT 0,
    peer        TEXT NOT NULL DEFAULT '',
    digests     TEXT NOT NULL DEFAULT '',
    reason      TEXT NOT NULL DEFAULT ''
);
