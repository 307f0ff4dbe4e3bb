-- Refunds the core instructed (refund.instructed), one row per refund number: a repeated
-- instruction is the same refund. status: pending (not yet answered by the channel), processing,
-- unknown (a call timed out, or the channel says abnormal: not final), success, failed (final).
-- The refund number is sent to the channel as out_refund_no / out_request_no / orderId on every
-- call, never another. next_at is when the refund worker next calls or queries the channel.
CREATE TABLE refunds (
    refund_no          TEXT PRIMARY KEY,
    channel            TEXT NOT NULL,
    order_no           TEXT NOT NULL,
    channel_trade_no   TEXT NOT NULL,
    paid_amount        BIGINT NOT NULL,
    amount             BIGINT NOT NULL,
    reason             TEXT NOT NULL,
    status             TEXT NOT NULL,
    accepted           BOOLEAN NOT NULL DEFAULT FALSE,
    txn_time           TEXT NOT NULL DEFAULT '',
    channel_refund_no  TEXT NOT NULL DEFAULT '',
    refunded_amount    BIGINT NOT NULL DEFAULT 0,
    refunded_at        {{ts}},
    detail             TEXT NOT NULL DEFAULT '',
    calls              INTEGER NOT NULL DEFAULT 0,
    queries            INTEGER NOT NULL DEFAULT 0,
    next_at            {{ts}},
    instructed_at      {{ts}} NOT NULL,
    updated_at         {{ts}} NOT NULL
);
CREATE INDEX refunds_due ON refunds (status, next_at);
CREATE INDEX refunds_order ON refunds (order_no);

-- Each distinct status of a refund reported to the core (refund.result), once: the primary key is
-- the arbiter when a notification, a query and the worker learn the same result at once.
CREATE TABLE refund_results (
    refund_no    TEXT NOT NULL,
    status       TEXT NOT NULL,
    message_id   TEXT NOT NULL,
    source       TEXT NOT NULL,
    recorded_at  {{ts}} NOT NULL,
    PRIMARY KEY (refund_no, status)
);
