-- Confirmed payments, one row per channel payment, never deleted. result is recorded (the
-- payment that paid its bill), duplicate (its violation was already paid: R5 refunds it) or
-- unmatched (no such bill, or the fine differs: kept for review and refund).
CREATE TABLE payments (
    id               {{id}},
    message_id       TEXT NOT NULL,
    bill_no          TEXT NOT NULL,
    violation_serial TEXT NOT NULL,
    order_no         TEXT NOT NULL,
    channel          TEXT NOT NULL,
    channel_trade_no TEXT NOT NULL,
    amount           BIGINT NOT NULL,
    fine             BIGINT NOT NULL,
    late_fee         BIGINT NOT NULL,
    paid_at          {{ts}} NOT NULL,
    notification_id  TEXT NOT NULL,
    result           TEXT NOT NULL,
    reason           TEXT NOT NULL DEFAULT '',
    recorded_at      {{ts}} NOT NULL
);
CREATE UNIQUE INDEX payments_message_id ON payments (message_id);
CREATE UNIQUE INDEX payments_channel_trade ON payments (channel, channel_trade_no);
CREATE UNIQUE INDEX payments_violation_recorded ON payments (violation_serial) WHERE result = 'recorded';
CREATE INDEX payments_bill ON payments (bill_no);

-- E-receipts, one per paid bill, stored only after the platform's signature and the finance
-- supervision seal verified.
CREATE TABLE receipts (
    bill_no      TEXT PRIMARY KEY,
    payment_id   BIGINT NOT NULL,
    order_no     TEXT NOT NULL,
    receipt_code TEXT NOT NULL,
    receipt_no   TEXT NOT NULL,
    check_code   TEXT NOT NULL,
    amount       BIGINT NOT NULL,
    payer_masked TEXT NOT NULL,
    issued_at    {{ts}} NOT NULL,
    seal         TEXT NOT NULL,
    stored_at    {{ts}} NOT NULL
);
CREATE UNIQUE INDEX receipts_payment ON receipts (payment_id);
CREATE UNIQUE INDEX receipts_number ON receipts (receipt_code, receipt_no);
