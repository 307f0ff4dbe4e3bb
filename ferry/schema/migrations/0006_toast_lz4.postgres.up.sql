-- The long values of a bundle's records (the digest list of every message it carried, and the
-- signed header that lists them) are compressed with LZ4 rather than PostgreSQL's default pglz.
-- Each is written several times per bundle on the hot path; pglz took a sixth of the server's
-- CPU at full load, LZ4 about a twentieth, and storing them uncompressed wrote so much more WAL
-- that it was slower still.
ALTER TABLE ferry_audit_pending ALTER COLUMN digests SET COMPRESSION lz4;
ALTER TABLE ferry_audit ALTER COLUMN digests SET COMPRESSION lz4;
ALTER TABLE ferry_evidence ALTER COLUMN digests SET COMPRESSION lz4;
ALTER TABLE ferry_evidence ALTER COLUMN signed SET COMPRESSION lz4;
