-- Refunds of payments, one row per refund, along every route (R1-R5), never deleted.
-- refund_no is fixed when the refund is created and is the number sent to the channel or bank,
-- so that a retry after a timeout is the same refund. At most one refund of a payment is in
-- flight (not refunded, failed or rejected) at a time. instruction_id makes an instruction
-- received twice (the same request of the 12123 platform, the same duplicate payment) one refund.
CREATE TABLE refunds (
    id             {{id}},
    refund_no      TEXT NOT NULL,
    payment_id     BIGINT NOT NULL,
    bill_no        TEXT NOT NULL,
    order_no       TEXT NOT NULL,
    channel        TEXT NOT NULL,
    route          TEXT NOT NULL,
    instruction_id TEXT NOT NULL,
    amount         BIGINT NOT NULL,
    reason         TEXT NOT NULL,
    state          TEXT NOT NULL,
    requested_by   TEXT NOT NULL,
    reviewed_by    TEXT NOT NULL DEFAULT '',
    channel_ref    TEXT NOT NULL DEFAULT '',
    created_at     {{ts}} NOT NULL,
    updated_at     {{ts}} NOT NULL
);
CREATE UNIQUE INDEX refunds_refund_no ON refunds (refund_no);
CREATE UNIQUE INDEX refunds_instruction ON refunds (route, instruction_id);
CREATE UNIQUE INDEX refunds_one_in_flight ON refunds (payment_id) WHERE state NOT IN ('refunded', 'failed', 'rejected');
CREATE INDEX refunds_state ON refunds (state, updated_at);

-- Every state change of a refund, with who or what caused it. Only inserted.
CREATE TABLE refund_transitions (
    id         {{id}},
    refund_no  TEXT NOT NULL,
    from_state TEXT NOT NULL,
    to_state   TEXT NOT NULL,
    actor      TEXT NOT NULL,
    detail     TEXT NOT NULL DEFAULT '',
    at         {{ts}} NOT NULL
);
CREATE INDEX refund_transitions_refund ON refund_transitions (refund_no, id);
