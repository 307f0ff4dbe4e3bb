-- The last sequence of each outgoing lane recorded as sent (bundle.sent), written together with
-- that record. An acknowledgement, or a one-way transport's confirmation, retires rows only up to
-- it: the last number handed out may be a producer's that has not committed yet, or a message
-- that was never sent. A lane's value starts from what its own evidence and acknowledgements
-- show; a bundle in flight at the upgrade is refused its acknowledgement once and sent again.
CREATE TABLE ferry_lane_sent (
    lane      TEXT PRIMARY KEY,
    sent_seq  BIGINT NOT NULL
);
INSERT INTO ferry_lane_sent (lane, sent_seq)
    SELECT lane, max(s) FROM (
        SELECT lane, acked_seq AS s FROM ferry_lane_acked
        UNION ALL
        SELECT lane, last_seq AS s FROM ferry_evidence WHERE role = 'sent'
    ) AS known
    GROUP BY lane;
