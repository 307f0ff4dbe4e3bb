-- bank_refund_results: every refund result of an agency bank the core received for flow R4,
-- pushed by the finance adapter (source push) or read back by the core's query (source query),
-- whether applied to the refund (outcome applied), a repeat of what the refund already records
-- (repeated) or refused for its content (refused, with the code answered); only inserted.
CREATE TABLE bank_refund_results (
    id             {{id}},
    refund_no      TEXT NOT NULL,
    bank_code      TEXT NOT NULL,
    bank_serial    TEXT NOT NULL,
    source         TEXT NOT NULL,
    status         TEXT NOT NULL,
    bank_refund_no TEXT NOT NULL,
    amount         BIGINT NOT NULL,
    outcome        TEXT NOT NULL,
    code           TEXT NOT NULL,
    detail         TEXT NOT NULL,
    received_at    {{ts}} NOT NULL
);
CREATE INDEX bank_refund_results_refund ON bank_refund_results (refund_no, id);
