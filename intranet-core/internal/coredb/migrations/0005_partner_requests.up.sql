-- Requests received from partner systems (12123 platform, bank adapter) through the signed
-- envelope of docs/partners.md. partner_requests keeps the first answer to each request ID of a
-- caller, so that a retry is answered with the same bytes; status 0 marks a request being
-- answered. partner_audit records every request, accepted or refused, and is only inserted.
CREATE TABLE partner_requests (
    caller      TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    hash        TEXT NOT NULL,
    status      INTEGER NOT NULL DEFAULT 0,
    body        {{bytes}},
    created_at  {{ts}} NOT NULL,
    PRIMARY KEY (caller, request_id)
);
CREATE TABLE partner_audit (
    id          {{id}},
    at          {{ts}} NOT NULL,
    caller      TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    method      TEXT NOT NULL,
    path        TEXT NOT NULL,
    status      INTEGER NOT NULL,
    code        TEXT NOT NULL,
    detail      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX partner_audit_at ON partner_audit (at);
