package main

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"time"

	"finepay/ferry/bundle"
	"finepay/ferry/relay"
	"finepay/shared/config"
)

// flags are ferryd's command-line flags, each with an environment variable FERRYD_<FLAG>.
type flags struct {
	side, db, node, peer, certs, ca                 *string
	signKey, signCert, encKey, encCert              *string
	peerSignCert, peerEncCert                       *string
	listen, peerURL, peerServerName, metricsListen  *string
	quarantine, logLevel                            *string
	maxMessages, maxBundleBytes, pullers            *int
	linger, longPoll, poll, resendAfter, maxBackoff *time.Duration
	audit                                           *auditFlags
	transport                                       *transportFlags
}

func newFlags() (*config.Set, *flags) {
	s := config.New("ferryd", "FERRYD")
	return s, &flags{
		side:           s.String("side", "", "which side this ferry serves: dmz (only listens; serves the internet gateway's database) or intranet (dials out; serves the core's)"),
		db:             s.String("db", "", "database URL of the service this ferry serves (postgres://... or sqlite:PATH); the ferry's schema is migrated at start"),
		node:           s.String("node", "", "this ferry's node name (default ferry-dmz or ferry-intranet by side)"),
		peer:           s.String("peer", "", "the peer ferry's node name, also the inbox's peer (default ferry-intranet or ferry-dmz by side)"),
		certs:          s.String("certs", "certs", "directory of certificates and keys as fpcerts lays them out"),
		ca:             s.String("ca", "", "CA certificate (default CERTS/ca.pem)"),
		signKey:        s.String("sign-key", "", "own signing key (default CERTS/NODE-sign.key)"),
		signCert:       s.String("sign-cert", "", "own signing certificate (default CERTS/NODE-sign.pem)"),
		encKey:         s.String("enc-key", "", "own encryption key (default CERTS/NODE-enc.key)"),
		encCert:        s.String("enc-cert", "", "own encryption certificate (default CERTS/NODE-enc.pem)"),
		peerSignCert:   s.String("peer-sign-cert", "", "the peer's signing certificate: the only accepted signer of bundles and acknowledgements, and the only allowed link peer (default CERTS/PEER-sign.pem)"),
		peerEncCert:    s.String("peer-enc-cert", "", "the peer's encryption certificate: bundle keys are wrapped to it (default CERTS/PEER-enc.pem)"),
		listen:         s.String("listen", ":7443", "DMZ side: address of the GM TLS link listener"),
		peerURL:        s.String("peer-url", "https://127.0.0.1:7443", "intranet side: URL of the DMZ ferry's link"),
		peerServerName: s.String("peer-server-name", "", "intranet side: name to check in the DMZ ferry's certificate (default the host of -peer-url)"),
		metricsListen:  s.String("metrics-listen", "", "address of /healthz, /readyz and /metrics (default :8081 on the DMZ side, :8091 on the intranet side)"),
		quarantine:     s.String("quarantine", "", "directory where rejected bundles are kept, named by their SM3 digest (default var/quarantine/NODE)"),
		logLevel:       s.String("log-level", "info", "debug, info, warn or error"),
		maxMessages:    s.Int("max-messages", bundle.DefaultMaxMessages, "most messages in one bundle, sent and accepted"),
		maxBundleBytes: s.Int("max-bundle-bytes", bundle.DefaultMaxBytes, "largest bundle in bytes, sent and accepted"),
		pullers:        s.Int("pullers", 2, "intranet side: concurrent pull requests to the DMZ ferry"),
		linger:         s.Duration("linger", 5*time.Millisecond, "how long to wait to fill a bundle that is not full"),
		longPoll:       s.Duration("long-poll", 10*time.Second, "how long a pull waits for messages (the DMZ holds a pull up to this)"),
		poll:           s.Duration("poll", 20*time.Millisecond, "how often the outgoing lanes are read for new messages"),
		resendAfter:    s.Duration("resend-after", 30*time.Second, "an unacknowledged bundle is sent again after this"),
		maxBackoff:     s.Duration("max-backoff", 30*time.Second, "bound of the jittered backoff after link errors"),
		audit:          newAuditFlags(s),
		transport:      newTransportFlags(s),
	}
}

// settings are the flags resolved: side defaults applied, file names filled in.
type settings struct {
	side                                         relay.Side
	db, node, peer                               string
	ca, signKey, signCert, encKey, encCert       string
	peerSignCert, peerEncCert                    string
	listen, peerURL, peerServerName, metrics     string
	quarantine, logLevel                         string
	limits                                       bundle.Limits
	pullers                                      int
	linger, longPoll, poll, resendAfter, backoff time.Duration
	audit                                        auditSettings
	transport                                    transportSettings
}

func (f *flags) resolve() (settings, error) {
	s := settings{
		side: relay.Side(*f.side), db: *f.db, node: *f.node, peer: *f.peer,
		listen: *f.listen, peerURL: *f.peerURL, peerServerName: *f.peerServerName, metrics: *f.metricsListen,
		quarantine: *f.quarantine, logLevel: *f.logLevel,
		limits:  bundle.Limits{MaxBytes: *f.maxBundleBytes, MaxMessages: *f.maxMessages},
		pullers: *f.pullers, linger: *f.linger, longPoll: *f.longPoll, poll: *f.poll,
		resendAfter: *f.resendAfter, backoff: *f.maxBackoff,
	}
	switch s.side {
	case relay.DMZ:
		s.node, s.peer, s.metrics = or(s.node, "ferry-dmz"), or(s.peer, "ferry-intranet"), or(s.metrics, ":8081")
	case relay.Intranet:
		s.node, s.peer, s.metrics = or(s.node, "ferry-intranet"), or(s.peer, "ferry-dmz"), or(s.metrics, ":8091")
		u, err := url.Parse(s.peerURL)
		if (err != nil || u.Scheme != "https" || u.Host == "") && *f.transport.transport == transportLink {
			return s, fmt.Errorf("-peer-url %q: want https://host:port", s.peerURL)
		}
		if err == nil {
			s.peerServerName = or(s.peerServerName, u.Hostname())
		}
	default:
		return s, fmt.Errorf("-side %q: want dmz or intranet", s.side)
	}
	if s.db == "" {
		return s, errors.New("-db is required: the database of the service this ferry serves")
	}
	if s.limits.MaxMessages < 1 || s.limits.MaxBytes < 1 {
		return s, errors.New("-max-messages and -max-bundle-bytes must be positive")
	}
	var err error
	if s.audit, err = f.audit.resolve(); err != nil {
		return s, err
	}
	if s.transport, err = f.transport.resolve(); err != nil {
		return s, err
	}
	file := func(flag *string, name string) string { return or(*flag, filepath.Join(*f.certs, name)) }
	s.ca = file(f.ca, "ca.pem")
	s.signKey, s.signCert = file(f.signKey, s.node+"-sign.key"), file(f.signCert, s.node+"-sign.pem")
	s.encKey, s.encCert = file(f.encKey, s.node+"-enc.key"), file(f.encCert, s.node+"-enc.pem")
	s.peerSignCert, s.peerEncCert = file(f.peerSignCert, s.peer+"-sign.pem"), file(f.peerEncCert, s.peer+"-enc.pem")
	s.quarantine = or(s.quarantine, filepath.Join("var", "quarantine", s.node))
	return s, nil
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
