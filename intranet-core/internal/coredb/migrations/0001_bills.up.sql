-- Payable bills: one per decision (while not cancelled). Personal fields are SM4-GCM sealed
-- under the data key (party_name_enc, plate_enc) with SM3-HMAC blind indexes for lookup.
CREATE TABLE bills (
    bill_no          TEXT PRIMARY KEY,
    token            TEXT NOT NULL,
    decision_no      TEXT NOT NULL,
    violation_serial TEXT NOT NULL,
    party_name_enc   {{bytes}} NOT NULL,
    party_name_idx   TEXT NOT NULL,
    plate_enc        {{bytes}} NOT NULL,
    plate_idx        TEXT NOT NULL,
    party_masked     TEXT NOT NULL,
    plate_masked     TEXT NOT NULL,
    fine             BIGINT NOT NULL,
    served_date      TEXT NOT NULL,
    late_fee_applies BOOLEAN NOT NULL,
    unit_code        TEXT NOT NULL,
    item_code        TEXT NOT NULL,
    unit_name        TEXT NOT NULL,
    item_name        TEXT NOT NULL,
    form_no          TEXT NOT NULL,
    pay_code         TEXT NOT NULL,
    due_date         TEXT NOT NULL,
    input_hash       TEXT NOT NULL,
    status           TEXT NOT NULL,
    created_by       TEXT NOT NULL,
    created_at       {{ts}} NOT NULL,
    paid_at          {{ts}},
    payment_id       BIGINT
);
CREATE UNIQUE INDEX bills_token ON bills (token);
CREATE UNIQUE INDEX bills_decision_active ON bills (decision_no) WHERE status <> 'cancelled';
CREATE INDEX bills_violation ON bills (violation_serial);
CREATE INDEX bills_party_name_idx ON bills (party_name_idx);
CREATE INDEX bills_plate_idx ON bills (plate_idx);
CREATE INDEX bills_created ON bills (created_at);
