-- Flow P3, agency bank by decision number (through the finance adapter).
--
-- bank_payments: one row per payment result a bank reported, by the bank's serial number
-- (idempotency: the same serial again is answered from this row; with other data it is refused).
-- payment_id is the row of the payments table the result was recorded as (channel bank), which
-- decides whether it paid the bill or was a duplicate (R5). biz_date is the Asia/Shanghai day of
-- paid_at, the day the amount owed was computed for and the day the bank reconciles it under.
CREATE TABLE bank_payments (
    bank_code    TEXT NOT NULL,
    bank_serial  TEXT NOT NULL,
    decision_no  TEXT NOT NULL,
    bill_no      TEXT NOT NULL,
    pay_code     TEXT NOT NULL,
    order_no     TEXT NOT NULL,
    amount       BIGINT NOT NULL,
    fine         BIGINT NOT NULL,
    late_fee     BIGINT NOT NULL,
    paid_at      {{ts}} NOT NULL,
    biz_date     TEXT NOT NULL,
    input_hash   TEXT NOT NULL,
    payment_id   BIGINT NOT NULL,
    result       TEXT NOT NULL,
    received_at  {{ts}} NOT NULL,
    PRIMARY KEY (bank_code, bank_serial)
);
CREATE INDEX bank_payments_day ON bank_payments (bank_code, biz_date);

-- bank_refusals: every payment result refused for its content (amount differing from what is
-- owed, unknown decision, wrong payment code), kept for review; only inserted.
CREATE TABLE bank_refusals (
    id           {{id}},
    bank_code    TEXT NOT NULL,
    bank_serial  TEXT NOT NULL,
    decision_no  TEXT NOT NULL,
    amount       BIGINT NOT NULL,
    owed         BIGINT NOT NULL,
    code         TEXT NOT NULL,
    reason       TEXT NOT NULL,
    received_at  {{ts}} NOT NULL
);
CREATE INDEX bank_refusals_serial ON bank_refusals (bank_code, bank_serial);

-- bank_reconciliations: the pre-reconciliation of a bank's end-of-day file, one per bank and
-- business day. result is the JSON answered to the adapter and forwarded to the non-tax system.
CREATE TABLE bank_reconciliations (
    bank_code     TEXT NOT NULL,
    biz_date      TEXT NOT NULL,
    file_sm3      TEXT NOT NULL,
    status        TEXT NOT NULL,
    result        TEXT NOT NULL,
    created_at    {{ts}} NOT NULL,
    PRIMARY KEY (bank_code, biz_date)
);
