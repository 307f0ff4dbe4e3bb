package relay

// Failpoints: the places where the relay calls Config.Failpoint, so that crash tests can kill
// the process exactly there (ferryd's FERRYD_CRASH_AT).
const (
	// FailAfterOutboxRead: the sender read a bundle's rows from the outbox, before sealing it.
	FailAfterOutboxRead = "after-outbox-read"
	// FailAfterBundleWrite: the bundle left the sender (intranet: the DMZ answered the push;
	// DMZ: the bundle is about to be handed to a pull), before its acknowledgement is handled.
	FailAfterBundleWrite = "after-bundle-write"
	// FailAfterReceiveBeforeCommit: the receiver verified a bundle and wrote its messages, its
	// evidence and (next) its bundle.received record, before that transaction commits.
	FailAfterReceiveBeforeCommit = "after-receive-before-commit"
	// FailAfterCommitBeforeAck: the receiver committed a bundle, before acknowledging it.
	FailAfterCommitBeforeAck = "after-commit-before-ack"
)

// Failpoints lists every failpoint name.
var Failpoints = []string{FailAfterOutboxRead, FailAfterBundleWrite, FailAfterReceiveBeforeCommit, FailAfterCommitBeforeAck}

func (r *Relay) failpoint(name string) {
	if r.cfg.Failpoint != nil {
		r.cfg.Failpoint(name)
	}
}
