-- The lookup hash of a bill (bill.published, lookup_hash): the keyed HMAC-SM3 of its decision
-- number and its plate's last four characters, by which a payer finds the bill on the lookup
-- page. Empty for bills published without one; never a plate in clear.
ALTER TABLE bills ADD COLUMN lookup_hash TEXT NOT NULL DEFAULT '';
CREATE INDEX bills_lookup_hash ON bills (lookup_hash);
