-- Outgoing lanes: the last sequence number handed out and the highest the peer acknowledged.
CREATE TABLE ferry_lane_out (
    lane       TEXT PRIMARY KEY,
    last_seq   BIGINT NOT NULL,
    acked_seq  BIGINT NOT NULL DEFAULT 0,
    acked_at   {{ts}}
);

-- The outbox: one row per message, written in the business transaction that caused it,
-- retired (deleted) once the peer acknowledged its sequence.
CREATE TABLE ferry_outbox (
    lane        TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    message_id  TEXT NOT NULL,
    type        TEXT NOT NULL,
    msg_key     TEXT NOT NULL,
    created_at  {{ts}} NOT NULL,
    envelope    {{bytes}} NOT NULL,
    PRIMARY KEY (lane, seq)
);
CREATE UNIQUE INDEX ferry_outbox_message_id ON ferry_outbox (message_id);

-- Incoming lanes: per sending peer and lane, the highest contiguous sequence committed.
CREATE TABLE ferry_lane_in (
    peer        TEXT NOT NULL,
    lane        TEXT NOT NULL,
    hwm         BIGINT NOT NULL,
    updated_at  {{ts}} NOT NULL,
    PRIMARY KEY (peer, lane)
);

-- The inbox: every message received, under its originator's ID (the final arbiter of
-- exactly-once), consumed by the service in its own transaction.
CREATE TABLE ferry_inbox (
    message_id   TEXT PRIMARY KEY,
    peer         TEXT NOT NULL,
    lane         TEXT NOT NULL,
    seq          BIGINT NOT NULL,
    type         TEXT NOT NULL,
    msg_key      TEXT NOT NULL,
    created_at   {{ts}} NOT NULL,
    envelope     {{bytes}} NOT NULL,
    bundle_id    TEXT NOT NULL,
    received_at  {{ts}} NOT NULL,
    consumed_at  {{ts}},
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT NOT NULL DEFAULT '',
    next_try_at  {{ts}}
);
CREATE INDEX ferry_inbox_pending ON ferry_inbox (lane, seq) WHERE consumed_at IS NULL;

-- The audit trail of the ferry: every bundle sent, received, rejected and acknowledged, and
-- every administrative action. leaf_hash is the hash of the record's canonical form, the leaf
-- of the tamper-evident log. Rows are only ever inserted.
CREATE TABLE ferry_audit (
    id          {{id}},
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
    reason      TEXT NOT NULL DEFAULT '',
    leaf_hash   {{bytes}} NOT NULL
);
