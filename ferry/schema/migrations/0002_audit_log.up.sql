-- The audit trail becomes a Merkle tree log (packages audit and merkle): record N is leaf N-1,
-- so record IDs must be contiguous from 1. Rows written before this migration are renumbered
-- once, in their order, in case the BIGSERIAL skipped values (it does on failed inserts); the
-- ID is not part of a record's leaf hash. From now on audit.Log hands out IDs itself, under the
-- lock of the head row below, so they are contiguous and committed in order.
UPDATE ferry_audit SET id = -r.rn
    FROM (SELECT id AS old_id, row_number() OVER (ORDER BY id) AS rn FROM ferry_audit) AS r
    WHERE ferry_audit.id = r.old_id AND ferry_audit.id <> r.rn;
UPDATE ferry_audit SET id = -id WHERE id < 0;

-- The head of the log, one row: its size (the last record ID handed out), the time of its
-- latest record in Unix microseconds (a record is never stamped earlier than the one before),
-- the tree's hash (sm3 or sha256, fixed once the log has a record), the highest record ID purged,
-- and the retention ferryd was last started with (what ferryctl audit purge keeps).
CREATE TABLE ferry_audit_head (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    size         BIGINT NOT NULL,
    last_at_us   BIGINT NOT NULL,
    hash         TEXT NOT NULL,
    purged       BIGINT NOT NULL DEFAULT 0,
    retention_s  BIGINT NOT NULL
);
INSERT INTO ferry_audit_head (id, size, last_at_us, hash, purged, retention_s)
    SELECT 1, count(*), 0, 'sm3', 0, 15897600 FROM ferry_audit;

-- Signed checkpoints: the tree head of the first size records, signed by the ferry (origin) with
-- its SM2 signing key (certificate cert_fp). note is the exact signed text; frontier the heads of
-- the perfect subtrees of the log at that size, from which the next checkpoint continues.
CREATE TABLE ferry_audit_checkpoint (
    origin     TEXT NOT NULL,
    size       BIGINT NOT NULL,
    root       {{bytes}} NOT NULL,
    hash       TEXT NOT NULL,
    at         {{ts}} NOT NULL,
    note       {{bytes}} NOT NULL,
    signature  {{bytes}} NOT NULL,
    cert_fp    TEXT NOT NULL,
    frontier   {{bytes}} NOT NULL,
    PRIMARY KEY (origin, size)
);

-- The leaf hashes of purged records (ferryctl audit purge): 40 bytes a record keep every
-- checkpoint, inclusion and consistency proof computable after the records are gone.
CREATE TABLE ferry_audit_purged (
    id         BIGINT PRIMARY KEY,
    leaf_hash  {{bytes}} NOT NULL
);

-- Completed exports (ferryctl audit export): records first_id..last_id were written to dir and
-- verified there against the signed checkpoint of checkpoint_size. Only exported records are
-- ever purged.
CREATE TABLE ferry_audit_export (
    id               {{id}},
    first_id         BIGINT NOT NULL,
    last_id          BIGINT NOT NULL,
    origin           TEXT NOT NULL,
    checkpoint_size  BIGINT NOT NULL,
    root             {{bytes}} NOT NULL,
    dir              TEXT NOT NULL,
    actor            TEXT NOT NULL,
    at               {{ts}} NOT NULL
);

-- Certificates that signed checkpoints and evidence, and their CAs, by SM3 fingerprint of the
-- DER ("sm3:<hex>"), so that exports and proofs can name and ship them.
CREATE TABLE ferry_cert (
    fingerprint  TEXT PRIMARY KEY,
    der          {{bytes}} NOT NULL,
    common_name  TEXT NOT NULL,
    issuer_fp    TEXT NOT NULL DEFAULT '',
    added_at     {{ts}} NOT NULL
);
