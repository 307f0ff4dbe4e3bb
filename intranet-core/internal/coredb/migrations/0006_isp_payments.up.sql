-- Payments the 12123 Internet Service Platform asked for (flow P1): one row per platform order
-- number (isp_order_no, unique per caller), pointing at the bill built for it. Several platform
-- orders may point at one bill (the payer started twice); the bill's payment result is pushed to
-- the platform for the first of them. input_hash is the keyed hash of the request's fields: the
-- same order number with other fields is refused.
CREATE TABLE isp_payments (
    caller       TEXT NOT NULL,
    isp_order_no TEXT NOT NULL,
    decision_no  TEXT NOT NULL,
    bill_no      TEXT NOT NULL,
    input_hash   TEXT NOT NULL,
    created_at   {{ts}} NOT NULL,
    PRIMARY KEY (caller, isp_order_no)
);
CREATE INDEX isp_payments_bill ON isp_payments (bill_no, created_at);
