package main

import (
	"errors"
	"io/fs"
	"log/slog"

	"finepay/shared/lookup"
)

// loadLookupKey reads -lookup-key-file: nil when the flag is empty or the file absent (the
// lookup page is then not served), an error when it cannot be read or is malformed.
func loadLookupKey(o options, log *slog.Logger) ([]byte, error) {
	if o.LookupKeyFile == "" {
		return nil, nil
	}
	k, err := lookup.LoadKey(o.certPath(o.LookupKeyFile))
	if errors.Is(err, fs.ErrNotExist) {
		log.Warn("no lookup key: the lookup page by decision number is not served", "path", o.certPath(o.LookupKeyFile))
		return nil, nil
	}
	return k, err
}
