-- E-receipt life cycle (E1).
--
-- receipt_stock: number ranges handed down by finance, taken into stock (accepted_at set once
-- the platform confirmed it); numbers are consumed in order (next_no) from accepted ranges.
CREATE TABLE receipt_stock (
    allocation_id TEXT PRIMARY KEY,
    unit_code     TEXT NOT NULL,
    receipt_code  TEXT NOT NULL,
    start_no      BIGINT NOT NULL,
    end_no        BIGINT NOT NULL,
    next_no       BIGINT NOT NULL,
    handed_at     {{ts}} NOT NULL,
    stored_at     {{ts}} NOT NULL,
    accepted_at   {{ts}}
);
CREATE INDEX receipt_stock_unit ON receipt_stock (unit_code, handed_at);

-- receipt_numbers: every number taken from stock, with the receipt data the unit signed for it;
-- never deleted. state: assigned (sent or to be sent), issued, void (refused by the platform:
-- reported for write-off). One live number per bill and kind (blue, red).
CREATE TABLE receipt_numbers (
    receipt_code   TEXT NOT NULL,
    receipt_no     TEXT NOT NULL,
    allocation_id  TEXT NOT NULL,
    unit_code      TEXT NOT NULL,
    bill_no        TEXT NOT NULL,
    kind           TEXT NOT NULL,
    state          TEXT NOT NULL,
    data           TEXT NOT NULL,
    unit_signature TEXT NOT NULL,
    assigned_at    {{ts}} NOT NULL,
    PRIMARY KEY (receipt_code, receipt_no)
);
CREATE UNIQUE INDEX receipt_numbers_bill_kind ON receipt_numbers (bill_no, kind) WHERE state <> 'void';

-- The signed receipt and its layout file on the issued receipt; red_flushed_at once reversed.
ALTER TABLE receipts ADD COLUMN data TEXT NOT NULL DEFAULT '';
ALTER TABLE receipts ADD COLUMN unit_signature TEXT NOT NULL DEFAULT '';
ALTER TABLE receipts ADD COLUMN layout {{bytes}};
ALTER TABLE receipts ADD COLUMN red_flushed_at {{ts}};

-- Red receipts (红冲), one per bill's receipt, never deleted.
CREATE TABLE red_receipts (
    bill_no        TEXT PRIMARY KEY,
    original_code  TEXT NOT NULL,
    original_no    TEXT NOT NULL,
    receipt_code   TEXT NOT NULL,
    receipt_no     TEXT NOT NULL,
    check_code     TEXT NOT NULL,
    amount         BIGINT NOT NULL,
    reason         TEXT NOT NULL,
    issued_at      {{ts}} NOT NULL,
    data           TEXT NOT NULL,
    unit_signature TEXT NOT NULL,
    seal           TEXT NOT NULL,
    layout         {{bytes}} NOT NULL,
    stored_at      {{ts}} NOT NULL
);
CREATE UNIQUE INDEX red_receipts_number ON red_receipts (receipt_code, receipt_no);

-- Master data kept in sync with finance.
CREATE TABLE receipt_units (
    unit_code   TEXT PRIMARY KEY,
    unit_name   TEXT NOT NULL,
    region_code TEXT NOT NULL,
    version     TEXT NOT NULL,
    synced_at   {{ts}} NOT NULL
);
CREATE TABLE receipt_items (
    item_code TEXT PRIMARY KEY,
    item_name TEXT NOT NULL,
    version   TEXT NOT NULL,
    synced_at {{ts}} NOT NULL
);

-- Write-off reports (核销), one per business day, with the platform's answer.
CREATE TABLE receipt_writeoffs (
    period        TEXT PRIMARY KEY,
    report        TEXT NOT NULL,
    status        TEXT NOT NULL,
    answer        TEXT NOT NULL,
    reported_at   {{ts}} NOT NULL
);
