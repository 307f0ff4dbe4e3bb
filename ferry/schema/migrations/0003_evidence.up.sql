-- Non-repudiation evidence, one row per bundle and role (package evidence). The sender keeps
-- what it signed and the receiver's signed acknowledgement it got (role 'sent'); the receiver
-- keeps the signed part of the bundle it verified and the acknowledgement it made
-- (role 'received'). signed is what the sender's SM2 signature covers: the bundle's preamble and
-- header, then the SM3 digest of wrapped key, nonce and ciphertext (see package bundle); the
-- ciphertext itself is not kept. at is when the bundle was sent or received; ack_at when the
-- acknowledgement was made (receiver) or received (sender).
CREATE TABLE ferry_evidence (
    bundle_id    TEXT NOT NULL,
    role         TEXT NOT NULL,
    sender       TEXT NOT NULL,
    receiver     TEXT NOT NULL,
    lane         TEXT NOT NULL,
    first_seq    BIGINT NOT NULL,
    last_seq     BIGINT NOT NULL,
    digests      TEXT NOT NULL,
    signed       {{bytes}} NOT NULL,
    signature    {{bytes}} NOT NULL,
    sender_fp    TEXT NOT NULL,
    receiver_fp  TEXT NOT NULL,
    at           {{ts}} NOT NULL,
    ack          {{bytes}},
    ack_at       {{ts}},
    PRIMARY KEY (bundle_id, role)
);
CREATE INDEX ferry_evidence_unacked ON ferry_evidence (lane, last_seq) WHERE ack IS NULL;

-- Which bundles carried which message (a message is sealed again when a bundle is resent after a
-- sequence gap).
CREATE TABLE ferry_evidence_message (
    message_id  TEXT NOT NULL,
    bundle_id   TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    PRIMARY KEY (message_id, bundle_id)
);
