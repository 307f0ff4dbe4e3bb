package main

import (
	"encoding/hex"
	"io"
	"time"

	"finepay/shared/gm"
	"finepay/shared/lookup"
)

// LookupKeyFile is the key, shared by the core and the gateway, of the lookup hash of a decision
// number and a plate's last four characters (package finepay/shared/lookup): 32 random bytes in
// hex.
const LookupKeyFile = "lookup.key"

func lookupFiles(r io.Reader, _ *gm.Issued, _, _ time.Time) ([]file, error) {
	k := make([]byte, lookup.KeySize)
	if _, err := io.ReadFull(r, k); err != nil {
		return nil, err
	}
	return []file{{LookupKeyFile, []byte(hex.EncodeToString(k) + "\n"), keyMode}}, nil
}

const lookupReadme = `
Bill lookup (shared by the core and the gateway):

  lookup.key              32 random bytes in hex: the HMAC-SM3 key of the hash of
                          a decision number and a plate's last four characters,
                          by which a payer finds a bill on the gateway.
`
