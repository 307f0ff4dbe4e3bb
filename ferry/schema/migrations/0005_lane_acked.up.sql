-- The acknowledged sequence of each outgoing lane, kept apart from the lane's last sequence in
-- ferry_lane_out: a producer locks its lane's ferry_lane_out row until it commits, and retiring
-- acknowledged rows must neither wait for producers nor hold them up.
CREATE TABLE ferry_lane_acked (
    lane       TEXT PRIMARY KEY,
    acked_seq  BIGINT NOT NULL DEFAULT 0,
    acked_at   {{ts}}
);
INSERT INTO ferry_lane_acked (lane, acked_seq, acked_at) SELECT lane, acked_seq, acked_at FROM ferry_lane_out;
ALTER TABLE ferry_lane_out DROP COLUMN acked_seq;
ALTER TABLE ferry_lane_out DROP COLUMN acked_at;
