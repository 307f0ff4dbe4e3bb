package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"finepay/ferry/spool"
	"finepay/shared/config"
)

// The transports.
const (
	transportLink  = "link"
	transportSpool = "spool"
)

// transportFlags choose the transport and configure the spool.
type transportFlags struct {
	transport, out, in                  *string
	poll, manifestInterval, retireAfter *time.Duration
	oneWay                              *bool
	maxBytes                            *int
}

func newTransportFlags(s *config.Set) *transportFlags {
	return &transportFlags{
		transport:        s.String("transport", transportLink, "link (GM TLS; the intranet dials the DMZ) or spool (files through a gap appliance's directories; neither side dials or listens)"),
		out:              s.String("spool-out", "", "spool: the outgoing directory the appliance takes files from"),
		in:               s.String("spool-in", "", "spool: the incoming directory the appliance puts files into"),
		poll:             s.Duration("spool-poll", spool.DefaultPoll, "spool: how often the directories are read besides inotify (and the polling fallback without it)"),
		manifestInterval: s.Duration("spool-manifest-interval", spool.DefaultManifestInterval, "spool: how often a signed manifest is written (also after each batch); a bundle listed this long is missing if it has not arrived"),
		oneWay:           s.Bool("spool-one-way", false, "spool: no acknowledgements or resend requests travel back; bundles are written again on a doubling schedule until confirmed by a peer manifest or retired"),
		retireAfter:      s.Duration("spool-one-way-retire-after", spool.DefaultRetireAfter, "spool, one way: outbox rows no peer manifest confirmed are retired this long after their bundle was first written (audited as bundle.retired)"),
		maxBytes:         s.Int("spool-max-bytes", spool.DefaultMaxBytes, "spool: bound of the outgoing directory in bytes (7/8 for bundles); at the bound new bundles wait and ferry_spool_full is 1"),
	}
}

// transportSettings are the transport flags resolved.
type transportSettings struct {
	transport                        string
	out, in                          string
	poll, manifestInterval, retireAt time.Duration
	oneWay                           bool
	maxBytes                         int64
}

func (f *transportFlags) resolve() (transportSettings, error) {
	s := transportSettings{transport: *f.transport, out: *f.out, in: *f.in, poll: *f.poll, manifestInterval: *f.manifestInterval,
		retireAt: *f.retireAfter, oneWay: *f.oneWay, maxBytes: int64(*f.maxBytes)}
	switch s.transport {
	case transportLink:
		return s, nil
	case transportSpool:
	default:
		return s, fmt.Errorf("-transport %q: want link or spool", s.transport)
	}
	if s.out == "" || s.in == "" {
		return s, errors.New("-transport spool needs -spool-out and -spool-in")
	}
	if filepath.Clean(s.out) == filepath.Clean(s.in) {
		return s, errors.New("-spool-out and -spool-in must be different directories")
	}
	if s.poll <= 0 || s.manifestInterval <= 0 || s.retireAt <= 0 || s.maxBytes <= 0 {
		return s, errors.New("-spool-poll, -spool-manifest-interval, -spool-one-way-retire-after and -spool-max-bytes must be positive")
	}
	return s, nil
}

// describe is the transport part of the admin.start record.
func (s transportSettings) describe() string {
	if s.transport != transportSpool {
		return " transport=link"
	}
	return fmt.Sprintf(" transport=spool out=%s in=%s one-way=%t max-bytes=%d", s.out, s.in, s.oneWay, s.maxBytes)
}

// openSpool makes the spool transport (it prepares out/.tmp and clears this node's leftovers).
func (d *daemon) openSpool() (*spool.Spool, error) {
	t := d.s.transport
	return spool.New(spool.Config{Relay: d.relay, Out: t.out, In: t.in, Poll: t.poll, ManifestInterval: t.manifestInterval,
		OneWay: t.oneWay, RetireAfter: t.retireAt, MaxBytes: t.maxBytes, Registry: d.reg})
}

// spoolErr is the spool's latest write failure, for /readyz.
func (d *daemon) spoolErr() error {
	if d.spool == nil {
		return nil
	}
	return d.spool.Err()
}
