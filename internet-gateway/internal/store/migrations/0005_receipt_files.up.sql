-- The signed e-receipt (E1) carried by receipt.issued, for the payer to download: the unit's
-- signed data, its signature, the finance supervision seal and the layout file (PDF). Empty on
-- receipts from before E1.
ALTER TABLE receipts ADD COLUMN data {{bytes}};
ALTER TABLE receipts ADD COLUMN unit_signature TEXT NOT NULL DEFAULT '';
ALTER TABLE receipts ADD COLUMN seal TEXT NOT NULL DEFAULT '';
ALTER TABLE receipts ADD COLUMN layout {{bytes}};
