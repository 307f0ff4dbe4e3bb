-- The gateway's read model of payable bills, published by the core (bill.published). Only what a
-- payer needs to see: masked name and plate, decision number, amounts and dates.
CREATE TABLE bills (
    bill_no           TEXT PRIMARY KEY,
    token             TEXT NOT NULL,
    decision_no       TEXT NOT NULL,
    party_masked      TEXT NOT NULL,
    plate_masked      TEXT NOT NULL,
    fine              BIGINT NOT NULL,
    served_date       TEXT NOT NULL,
    late_fee_applies  BOOLEAN NOT NULL,
    unit_name         TEXT NOT NULL,
    item_name         TEXT NOT NULL,
    form_no           TEXT NOT NULL,
    pay_code          TEXT NOT NULL,
    status            TEXT NOT NULL,
    issued_at         {{ts}} NOT NULL,
    updated_at        {{ts}} NOT NULL
);
CREATE UNIQUE INDEX bills_token ON bills (token);

-- Channel orders: one per attempt to pay a bill through a channel. expires_at is 23:59:59
-- Asia/Shanghai of the day the order was created.
CREATE TABLE channel_orders (
    order_no    TEXT PRIMARY KEY,
    bill_no     TEXT NOT NULL,
    channel     TEXT NOT NULL,
    amount      BIGINT NOT NULL,
    fine        BIGINT NOT NULL,
    late_fee    BIGINT NOT NULL,
    code_url    TEXT NOT NULL,
    status      TEXT NOT NULL,
    expires_at  {{ts}} NOT NULL,
    created_at  {{ts}} NOT NULL,
    updated_at  {{ts}} NOT NULL,
    queried_at  {{ts}}
);
CREATE INDEX channel_orders_bill ON channel_orders (bill_no, channel, status);
CREATE INDEX channel_orders_status ON channel_orders (status, created_at);

-- Every channel notification exactly as received, with its verdict: accepted or duplicate
-- (written in the transaction that records its payment), rejected or ignored (with the reason),
-- or received (not decided, or its payment could not be stored).
CREATE TABLE notifications (
    id              {{id}},
    channel         TEXT NOT NULL,
    received_at     {{ts}} NOT NULL,
    remote_addr     TEXT NOT NULL,
    headers         TEXT NOT NULL,
    body            {{bytes}} NOT NULL,
    verdict         TEXT NOT NULL,
    reason          TEXT NOT NULL DEFAULT '',
    event_id        TEXT NOT NULL DEFAULT '',
    out_trade_no    TEXT NOT NULL DEFAULT '',
    channel_trade_no TEXT NOT NULL DEFAULT '',
    decided_at      {{ts}}
);
CREATE INDEX notifications_received ON notifications (received_at);

-- Confirmed payments. UNIQUE (channel, channel_trade_no) is the final arbiter of exactly-once:
-- a second delivery of the same payment conflicts and changes nothing.
CREATE TABLE payments (
    id                {{id}},
    channel           TEXT NOT NULL,
    channel_trade_no  TEXT NOT NULL,
    order_no          TEXT NOT NULL,
    bill_no           TEXT NOT NULL,
    amount            BIGINT NOT NULL,
    fine              BIGINT NOT NULL,
    late_fee          BIGINT NOT NULL,
    paid_at           {{ts}} NOT NULL,
    message_id        TEXT NOT NULL,
    notification_id   TEXT NOT NULL,
    source            TEXT NOT NULL,
    recorded_at       {{ts}} NOT NULL
);
CREATE UNIQUE INDEX payments_channel_trade ON payments (channel, channel_trade_no);
CREATE UNIQUE INDEX payments_order ON payments (order_no);
CREATE INDEX payments_bill ON payments (bill_no, paid_at);

-- E-receipts issued by the core for payments (receipt.issued).
CREATE TABLE receipts (
    order_no      TEXT PRIMARY KEY,
    bill_no       TEXT NOT NULL,
    receipt_code  TEXT NOT NULL,
    receipt_no    TEXT NOT NULL,
    check_code    TEXT NOT NULL,
    amount        BIGINT NOT NULL,
    payer_masked  TEXT NOT NULL,
    issued_at     {{ts}} NOT NULL,
    received_at   {{ts}} NOT NULL
);
CREATE INDEX receipts_bill ON receipts (bill_no);
