package main

// lookupKeyPath is -lookup-key-file resolved like the key flags; empty when the flag is empty
// (no lookup key).
func (o *options) lookupKeyPath() string {
	if o.LookupKeyFile == "" {
		return ""
	}
	return o.certPath(o.LookupKeyFile)
}
