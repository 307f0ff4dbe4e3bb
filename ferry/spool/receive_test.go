package spool

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"finepay/ferry/bundle"
	"finepay/ferry/internal/fixture"
	"finepay/shared/gm"
)

// These tests drive single steps of each side by hand, with a clock they set, and play the
// appliance themselves.

func manual(t *testing.T) (*world, *clock) {
	t.Helper()
	c := &clock{t: time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC)}
	return setup(t, options{clock: c}), c
}

func read(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func write(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// bundlesOf returns the bundle files in dir by first sequence.
func bundlesOf(t *testing.T, dir string) []string {
	t.Helper()
	names := withSuffix(files(t, dir), ".fpb")
	slices.SortFunc(names, func(a, b string) int {
		na, _ := ParseName(a)
		nb, _ := ParseName(b)
		return int(na.First - nb.First)
	})
	return names
}

func sm3Name(b []byte) string {
	s := gm.SM3(b)
	return hex.EncodeToString(s[:]) + ".bundle"
}

// Files out of order and twice (once under another name): each message applied once, in
// order; the later bundles wait for the earlier; duplicates are acknowledged again; the
// acknowledgement retires the sender's outbox and the files it still had in out/.
func TestOutOfOrderAndDuplicates(t *testing.T) {
	t.Parallel()
	w, _ := manual(t)
	fixture.Put(t, w.in.db, 1, bills(t, 24)...)
	w.in.step(t)
	b := bundlesOf(t, w.in.out)
	if len(b) != 3 || len(withSuffix(files(t, w.in.out), ".fpm")) != 1 {
		t.Fatalf("out/ holds %v", files(t, w.in.out))
	}
	// The third bundle first: held.
	move(t, w.in.out, w.dmz.in, func(n string) bool { return n == b[2] })
	w.dmz.step(t)
	if n := count(t, w.dmz.db, `SELECT count(*) FROM ferry_inbox`); n != 0 {
		t.Fatalf("%d messages applied past a gap", n)
	}
	if got := metric(t, w.dmz.reg, "ferry_spool_held_files"); got != 1 {
		t.Fatalf("held %v", got)
	}
	// The first, twice.
	first := read(t, filepath.Join(w.in.out, b[0]))
	write(t, filepath.Join(w.dmz.in, "renamed-by-appliance.dat"), first)
	move(t, w.in.out, w.dmz.in, func(n string) bool { return n == b[0] })
	w.dmz.step(t)
	if n := count(t, w.dmz.db, `SELECT count(*) FROM ferry_inbox`); n != 8 {
		t.Fatalf("%d messages after the first bundle", n)
	}
	// The second: the third follows.
	move(t, w.in.out, w.dmz.in, func(n string) bool { return n == b[1] })
	w.dmz.step(t)
	if n := count(t, w.dmz.db, `SELECT count(*) FROM ferry_inbox WHERE seq BETWEEN 1 AND 24`); n != 24 {
		t.Fatalf("%d messages after all three", n)
	}
	if left := files(t, w.dmz.in); len(left) != 0 {
		t.Fatalf("in/ still holds %v", left)
	}
	recs := records(t, w.dmz.db)
	if got := countEvents(recs, "bundle.received", "ok"); got != 3 {
		t.Errorf("%d bundle.received", got)
	}
	if got := countEvents(recs, "bundle.duplicate", "ok"); got != 1 {
		t.Errorf("%d bundle.duplicate", got)
	}
	// One acknowledgement file per lane: the latest supersedes those before it.
	acks := withSuffix(files(t, w.dmz.out), ".fpa")
	if len(acks) != 1 || !strings.Contains(acks[0], "-to-gateway.0-24-24-") {
		t.Fatalf("acknowledgements in out/: %v", acks)
	}
	// A bundle file still in the sender's out/ goes when the acknowledgement arrives.
	write(t, filepath.Join(w.in.out, b[0]), first)
	move(t, w.dmz.out, w.in.in, func(n string) bool { return strings.HasSuffix(n, ".fpa") })
	w.in.step(t)
	if n := count(t, w.in.db, `SELECT count(*) FROM ferry_outbox`); n != 0 {
		t.Fatalf("%d outbox rows not retired", n)
	}
	if left := bundlesOf(t, w.in.out); len(left) != 0 {
		t.Fatalf("acknowledged bundles left in out/: %v", left)
	}
}

// A file cut short is retried while it may still be copied; completed, it is applied. One that
// stays short is quarantined and audited once it has been still for Settle, and the bundle
// delivered whole afterwards is applied.
func TestPartialFiles(t *testing.T) {
	t.Parallel()
	w, c := manual(t)
	settle := w.dmz.s.cfg.Settle
	fixture.Put(t, w.in.db, 1, bills(t, 16)...)
	w.in.step(t)
	b := bundlesOf(t, w.in.out)
	whole := read(t, filepath.Join(w.in.out, b[0]))
	dst := filepath.Join(w.dmz.in, b[0])
	write(t, dst, whole[:len(whole)/2])
	for range 4 {
		w.dmz.step(t)
		c.add(settle / 8)
	}
	if _, err := os.Stat(dst); err != nil {
		t.Fatal("a file still being copied was taken away")
	}
	write(t, dst, whole)
	w.dmz.step(t)
	if n := count(t, w.dmz.db, `SELECT count(*) FROM ferry_inbox`); n != 8 {
		t.Fatalf("%d messages once the file was whole", n)
	}

	second := read(t, filepath.Join(w.in.out, b[1]))
	short := second[:len(second)-10]
	dst = filepath.Join(w.dmz.in, b[1])
	write(t, dst, short)
	for range settleLooks {
		c.add(settle)
		w.dmz.step(t)
	}
	if _, err := os.Stat(dst); err == nil {
		t.Fatal("a settled short file is still in in/")
	}
	if _, err := os.Stat(filepath.Join(w.dmz.quarDir, sm3Name(short))); err != nil {
		t.Fatalf("not quarantined: %v", err)
	}
	if !audited(t, w.dmz, sm3Name(short)) {
		t.Fatal("quarantined without a bundle.rejected record")
	}
	move(t, w.in.out, w.dmz.in, func(n string) bool { return n == b[1] })
	w.dmz.step(t)
	if n := count(t, w.dmz.db, `SELECT count(*) FROM ferry_inbox`); n != 16 {
		t.Fatalf("%d messages after the whole second bundle", n)
	}
}

func audited(t *testing.T, sd *side, quarantined string) bool {
	for _, r := range records(t, sd.db) {
		if r.Event == "bundle.rejected" && r.Result == "rejected" && strings.Contains(r.Reason, "quarantined as "+quarantined) {
			return true
		}
	}
	return false
}

// Files that are not the peer's — garbage, a bundle magic with garbage, a bundle signed by
// another key, an acknowledgement and a manifest with a flipped byte — are quarantined and
// audited as bundle.rejected once settled, and nothing of them is applied.
func TestForeignFiles(t *testing.T) {
	t.Parallel()
	w, c := manual(t)
	fixture.Put(t, w.in.db, 1, bills(t, 8)...)
	fixture.Put(t, w.dmz.db, 1, payments(t, 8)...)
	w.in.step(t)
	w.dmz.step(t)
	garbage := make([]byte, 300)
	rand.Read(garbage)
	ownBundle := read(t, filepath.Join(w.in.out, bundlesOf(t, w.in.out)[0])) // signed by the intranet itself, not its peer
	manifest := read(t, filepath.Join(w.in.out, withSuffix(files(t, w.in.out), ".fpm")[0]))
	manifest[len(manifest)/2] ^= 1
	// An acknowledgement of the intranet's with a flipped signature byte.
	move(t, w.in.out, w.dmz.in, func(n string) bool { return strings.HasSuffix(n, ".fpb") })
	w.dmz.step(t)
	ack := read(t, filepath.Join(w.dmz.out, withSuffix(files(t, w.dmz.out), ".fpa")[0]))
	ack[len(ack)-5] ^= 1
	foreign := map[string][]byte{
		"garbage.bin":     garbage,
		"magic.fpb":       append([]byte(bundle.Magic), garbage...),
		"own-bundle.fpb":  ownBundle,
		"x-manifest.fpm":  manifest,
		"tampered.fpa":    ack,
		"tiny":            []byte("F"),
		"request-ish.fpr": append([]byte(RequestMagic+"\x00\x00\x00\x02{}"), garbage[:70]...),
	}
	for name, b := range foreign {
		write(t, filepath.Join(w.in.in, name), b)
	}
	for range settleLooks {
		c.add(w.in.s.cfg.Settle)
		w.in.step(t)
	}
	if left := files(t, w.in.in); len(left) != 0 {
		t.Fatalf("in/ still holds %v", left)
	}
	for name, b := range foreign {
		q := sm3Name(b)
		if _, err := os.Stat(filepath.Join(w.in.quarDir, q)); err != nil {
			t.Errorf("%s not quarantined", name)
		}
		if !audited(t, w.in, q) {
			t.Errorf("%s quarantined without its bundle.rejected record", name)
		}
	}
	if n := count(t, w.in.db, `SELECT count(*) FROM ferry_inbox`); n != 0 {
		t.Errorf("%d foreign messages applied", n)
	}
	if n := count(t, w.in.db, `SELECT count(*) FROM ferry_outbox`); n != 8 {
		t.Errorf("%d outbox rows left: a tampered acknowledgement retired rows", n)
	}
}

// A bundle the appliance dropped: the peer's manifest lists it, the receiver asks for it with a
// signed resend request (audited as bundle.missing), and the sender writes it again. An
// acknowledgement the appliance dropped: the sender's next manifest shows it unacknowledged and
// the receiver acknowledges again.
func TestManifestRecoversDroppedFiles(t *testing.T) {
	t.Parallel()
	w, c := manual(t)
	fixture.Put(t, w.in.db, 1, bills(t, 24)...)
	w.in.step(t)
	b := bundlesOf(t, w.in.out)
	if err := os.Remove(filepath.Join(w.in.out, b[0])); err != nil { // dropped by the appliance
		t.Fatal(err)
	}
	// The manifest written with the bundles: the first is not overdue yet (perhaps still on its way).
	move(t, w.in.out, w.dmz.in, nil)
	w.dmz.step(t)
	if got := metric(t, w.dmz.reg, "ferry_spool_held_files"); got != 2 {
		t.Fatalf("held %v", got)
	}
	if reqs := withSuffix(files(t, w.dmz.out), ".fpr"); len(reqs) != 0 {
		t.Fatalf("a resend asked for a bundle not yet overdue: %v", reqs)
	}
	// A manifest written a manifest interval after the bundles: the first one is overdue.
	c.add(w.in.s.cfg.ManifestInterval)
	w.in.step(t)
	move(t, w.in.out, w.dmz.in, func(n string) bool { return strings.HasSuffix(n, ".fpm") })
	w.dmz.step(t)
	reqs := withSuffix(files(t, w.dmz.out), ".fpr")
	if len(reqs) != 1 {
		t.Fatalf("no resend request: out/ holds %v", files(t, w.dmz.out))
	}
	r, err := OpenRequest(read(t, filepath.Join(w.dmz.out, reqs[0])), w.dmz.r.Settings().Keys.Signer.(*gm.PrivateKey).Public())
	if err != nil || len(r.Lanes) != 1 || len(r.Lanes[0].Missing) != 1 || r.Lanes[0].Missing[0].FirstSeq != 1 {
		t.Fatalf("request %+v, %v", r, err)
	}
	if countEvents(records(t, w.dmz.db), EventMissing, "ok") != 1 {
		t.Fatal("the missing bundle was not audited")
	}
	move(t, w.dmz.out, w.in.in, func(n string) bool { return strings.HasSuffix(n, ".fpr") })
	w.in.step(t)
	if got := bundlesOf(t, w.in.out); len(got) != 1 || got[0] != b[0] {
		t.Fatalf("the sender wrote %v again, want %s", got, b[0])
	}
	if metric(t, w.in.reg, "ferry_spool_resends_total") != 1 {
		t.Fatal("resend not counted")
	}
	move(t, w.in.out, w.dmz.in, func(n string) bool { return strings.HasSuffix(n, ".fpb") })
	w.dmz.step(t)
	if n := count(t, w.dmz.db, `SELECT count(*) FROM ferry_inbox`); n != 24 {
		t.Fatalf("%d messages", n)
	}
	// The appliance drops the acknowledgement too.
	for _, n := range withSuffix(files(t, w.dmz.out), ".fpa") {
		os.Remove(filepath.Join(w.dmz.out, n))
	}
	c.add(w.in.s.cfg.ManifestInterval)
	w.in.step(t)
	move(t, w.in.out, w.dmz.in, func(n string) bool { return strings.HasSuffix(n, ".fpm") })
	w.dmz.step(t)
	acks := withSuffix(files(t, w.dmz.out), ".fpa")
	if len(acks) != 1 {
		t.Fatalf("no acknowledgement given again: %v", files(t, w.dmz.out))
	}
	move(t, w.dmz.out, w.in.in, func(n string) bool { return strings.HasSuffix(n, ".fpa") })
	w.in.step(t)
	if n := count(t, w.in.db, `SELECT count(*) FROM ferry_outbox`); n != 0 {
		t.Fatalf("%d outbox rows not retired", n)
	}
	if !bytes.Contains(read(t, filepath.Join(w.dmz.out, withSuffix(files(t, w.dmz.out), ".fpm")[0])), []byte(`"hwm":24`)) {
		t.Error("the receiver's manifest does not show its high-water mark")
	}
}

// One-way, a bundle every write of which the appliance lost: the sender retires it unconfirmed
// after RetireAfter (bundle.retired); the receiver learns it from the next manifest, audits the
// loss (bundle.missing, rejected) and does not skip the gap: the later bundle stays held.
func TestOneWayLossIsNotSilent(t *testing.T) {
	t.Parallel()
	c := &clock{t: time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC)}
	w := setup(t, options{clock: c, oneWay: true, retireAfter: time.Minute})
	fixture.Put(t, w.in.db, 1, bills(t, 16)...)
	w.in.step(t)
	b := bundlesOf(t, w.in.out)
	if err := os.Remove(filepath.Join(w.in.out, b[0])); err != nil {
		t.Fatal(err)
	}
	move(t, w.in.out, w.dmz.in, func(n string) bool { return n == b[1] })
	w.dmz.step(t)
	c.add(2 * time.Minute)
	w.in.step(t)
	if n := count(t, w.in.db, `SELECT count(*) FROM ferry_outbox`); n != 0 {
		t.Fatalf("%d rows not retired after RetireAfter", n)
	}
	if countEvents(records(t, w.in.db), EventRetired, "ok") != 1 {
		t.Fatal("retirement not audited")
	}
	move(t, w.in.out, w.dmz.in, func(n string) bool { return strings.HasSuffix(n, ".fpm") })
	w.dmz.step(t)
	lost := false
	for _, r := range records(t, w.dmz.db) {
		if r.Event == EventMissing && r.Result == "rejected" && r.FirstSeq == 1 && r.LastSeq == 16 && strings.Contains(r.Reason, "will not come") {
			lost = true
		}
	}
	if !lost {
		t.Fatal("the receiver did not audit the sequences lost for good")
	}
	if n := count(t, w.dmz.db, `SELECT count(*) FROM ferry_inbox`); n != 0 {
		t.Fatalf("%d messages applied past the gap", n)
	}
	if got := metric(t, w.dmz.reg, "ferry_spool_held_files"); got != 1 {
		t.Fatalf("held %v", got)
	}
	if back := files(t, w.dmz.out); len(withSuffix(back, ".fpa"))+len(withSuffix(back, ".fpr")) != 0 {
		t.Fatalf("the one-way receiver wrote %v", back)
	}
}

// restart replaces a side's spool by a new one, as a restarted ferryd makes it.
func (sd *side) restart(t *testing.T, o options) {
	t.Helper()
	s, err := New(Config{Relay: sd.r, Out: sd.out, In: sd.in, Poll: sd.s.cfg.Poll, ManifestInterval: sd.s.cfg.ManifestInterval,
		OneWay: o.oneWay, RetireAfter: o.retireAfter, MaxBytes: o.maxBytes})
	if err != nil {
		t.Fatal(err)
	}
	sd.s = s
	s.resync(t.Context())
}

// Both ferries restart in the middle: the sender clears its own files from out/ and seals what
// is unacknowledged afresh, the receiver acknowledges at start what it committed; every message
// is applied once.
func TestRestartsMidway(t *testing.T) {
	t.Parallel()
	w, _ := manual(t)
	fixture.Put(t, w.in.db, 1, bills(t, 16)...)
	w.in.step(t)
	b := bundlesOf(t, w.in.out)
	move(t, w.in.out, w.dmz.in, func(n string) bool { return n == b[0] })
	w.dmz.step(t)
	for _, n := range files(t, w.dmz.out) { // the acknowledgement is lost in the crash
		os.Remove(filepath.Join(w.dmz.out, n))
	}
	w.in.restart(t, w.o)
	if left := files(t, w.in.out); len(left) != 0 {
		t.Fatalf("the restarted sender left %v in out/", left)
	}
	w.dmz.restart(t, w.o)
	w.dmz.step(t)
	if acks := withSuffix(files(t, w.dmz.out), ".fpa"); len(acks) != 1 || !strings.Contains(acks[0], "-8-8-"+noBundle) {
		t.Fatalf("no cumulative acknowledgement at start: %v", files(t, w.dmz.out))
	}
	w.in.step(t)
	again := bundlesOf(t, w.in.out)
	if len(again) != 2 || again[0] == b[0] {
		t.Fatalf("the restarted sender wrote %v (before: %v)", again, b)
	}
	move(t, w.in.out, w.dmz.in, func(n string) bool { return strings.HasSuffix(n, ".fpb") })
	w.dmz.step(t)
	if got := inboxPlaces(t, w.dmz.db); len(got) != 16 {
		t.Fatalf("%d messages", len(got))
	}
	if countEvents(records(t, w.dmz.db), "bundle.duplicate", "ok") != 1 {
		t.Error("the bundle sealed again was not taken as a duplicate")
	}
	move(t, w.dmz.out, w.in.in, func(n string) bool { return strings.HasSuffix(n, ".fpa") })
	w.in.step(t)
	if n := count(t, w.in.db, `SELECT count(*) FROM ferry_outbox`); n != 0 {
		t.Fatalf("%d outbox rows left", n)
	}
}

// One way, with no way back, a sender keeps every bundle of the last RetireAfter; with many busy
// lanes, listing listPerLane of each would outgrow MaxManifestBytes. The manifest then lists
// fewer bundles of each lane, the oldest, and still goes out with every lane's acknowledged
// sequence: before, sealing failed and no manifest was written at all, so the receiver could
// no longer tell a dropped bundle.
func TestOneWayManifestFitsWithManyBusyLanes(t *testing.T) {
	t.Parallel()
	c := &clock{t: time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC)}
	w := setup(t, options{clock: c, oneWay: true})
	s := w.in.s
	const lanes = 24 // a full list of each is about 5 MB
	written := c.now().Add(-time.Hour)
	for l := range lanes {
		ls := &laneOut{name: "to-gateway." + strconv.Itoa(l), acked: 5000}
		seq := ls.acked
		for i := range listPerLane {
			id := make([]byte, 16)
			id[0], id[1], id[2] = byte(l), byte(i>>8), byte(i)
			sum := gm.SM3(id)
			ls.flights = append(ls.flights, &flight{h: bundle.Header{BundleID: hex.EncodeToString(id), Lane: ls.name, FirstSeq: seq + 1, LastSeq: seq + 4},
				first: written, last: written, sum: hex.EncodeToString(sum[:]), sends: 1})
			seq += 4
		}
		ls.next = seq
		s.lanes[ls.name] = ls
	}
	c.add(s.cfg.ManifestInterval)
	s.manifest(c.now())
	names := withSuffix(files(t, w.in.out), ".fpm")
	if len(names) != 1 {
		t.Fatalf("manifests in out/: %v (err %v)", names, s.Err())
	}
	m, err := OpenManifest(read(t, filepath.Join(w.in.out, names[0])), w.in.r.Settings().Keys.Signer.Public())
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Sent) != lanes {
		t.Fatalf("%d lanes listed, want %d", len(m.Sent), lanes)
	}
	for _, sl := range m.Sent {
		if sl.Acked != 5000 || len(sl.Bundles) == 0 || len(sl.Bundles) >= listPerLane || sl.Bundles[0].FirstSeq != 5001 {
			t.Fatalf("lane %s: acked %d, %d bundles listed from %d; want acked 5000 and the oldest, fewer than %d", sl.Lane, sl.Acked,
				len(sl.Bundles), sl.Bundles[0].FirstSeq, listPerLane)
		}
	}
}

// out/.tmp/, removed while the spool runs (a clean-up that did not spare dot names), is made
// again at the next write: bundles and manifests go on being written without a restart.
func TestSpoolMakesItsTemporaryDirectoryAgain(t *testing.T) {
	t.Parallel()
	w, c := manual(t)
	fixture.Put(t, w.in.db, 1, bills(t, 8)...)
	if err := os.RemoveAll(filepath.Join(w.in.out, tmpDir)); err != nil {
		t.Fatal(err)
	}
	c.add(w.in.s.cfg.ManifestInterval)
	w.in.step(t)
	if b, m := bundlesOf(t, w.in.out), withSuffix(files(t, w.in.out), ".fpm"); len(b) == 0 || len(m) == 0 {
		t.Fatalf("after .tmp/ was removed: bundles %v, manifests %v, err %v", b, m, w.in.s.Err())
	}
}

// The sender's clock runs two hours ahead, writes a manifest, and is set right. Its later
// manifests are neither withheld by the sender (whose last manifest now lies in the future) nor
// taken as stale by the receiver for two hours: a bundle the appliance dropped after the clock
// was set right is asked for again within minutes.
func TestManifestsGoOnAfterTheClockIsSetBack(t *testing.T) {
	t.Parallel()
	c := &clock{t: time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC)}
	w := setup(t, options{clock: c, resendAfter: time.Hour}) // the dropped bundle is asked for, not resent by the timer
	c.add(2 * time.Hour)
	fixture.Put(t, w.in.db, 1, bills(t, 8)...)
	w.in.step(t)
	move(t, w.in.out, w.dmz.in, nil)
	w.dmz.step(t)
	if n := count(t, w.dmz.db, `SELECT count(*) FROM ferry_inbox`); n != 8 {
		t.Fatalf("%d messages before the clock was set back", n)
	}
	c.add(-2 * time.Hour)

	fixture.Put(t, w.in.db, 1, bills(t, 16)[8:]...)
	w.in.step(t)
	b := bundlesOf(t, w.in.out)
	if len(b) != 1 {
		t.Fatalf("bundles %v", b)
	}
	if err := os.Remove(filepath.Join(w.in.out, b[0])); err != nil { // dropped by the appliance
		t.Fatal(err)
	}
	c.add(peerClockLead + w.in.s.cfg.ManifestInterval)
	w.in.step(t)
	if m := withSuffix(files(t, w.in.out), ".fpm"); len(m) != 1 {
		t.Fatalf("the sender wrote no manifest after its clock was set back: out/ holds %v", files(t, w.in.out))
	}
	move(t, w.in.out, w.dmz.in, func(n string) bool { return strings.HasSuffix(n, ".fpm") })
	w.dmz.step(t)
	if reqs := withSuffix(files(t, w.dmz.out), ".fpr"); len(reqs) != 1 {
		t.Fatalf("the receiver took the manifest as stale and asked for nothing: out/ holds %v", files(t, w.dmz.out))
	}
}

// The peer's clock alone runs two hours ahead for one manifest, then is set right: its later
// manifests are stale for peerClockLead at most, not for two hours.
func TestAManifestFromThePeersFutureIsNotKeptAsSuch(t *testing.T) {
	t.Parallel()
	c := &clock{t: time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC)}
	w := setup(t, options{clock: c, resendAfter: time.Hour}) // the dropped bundle is asked for, not resent by the timer
	st := w.in.r.Settings()
	ahead := Manifest{ManifestID: "0123456789abcdef0123456789abcdef", From: st.Node, To: st.Peer, At: c.now().Add(2 * time.Hour)}
	raw, err := SealManifest(rand.Reader, ahead, st.Keys.Signer)
	if err != nil {
		t.Fatal(err)
	}
	name := Name{Node: st.Node, Lane: laneManifest, First: 1, Last: 1, ID: ahead.ManifestID, Kind: KindManifest}.String()
	write(t, filepath.Join(w.dmz.in, name), raw)
	w.dmz.step(t)
	if len(files(t, w.dmz.in)) != 0 {
		t.Fatalf("the manifest from the future was not handled: in/ holds %v", files(t, w.dmz.in))
	}

	fixture.Put(t, w.in.db, 1, bills(t, 8)...)
	w.in.step(t)
	b := bundlesOf(t, w.in.out)
	if err := os.Remove(filepath.Join(w.in.out, b[0])); err != nil { // dropped by the appliance
		t.Fatal(err)
	}
	c.add(peerClockLead + w.in.s.cfg.ManifestInterval)
	w.in.step(t)
	move(t, w.in.out, w.dmz.in, func(n string) bool { return strings.HasSuffix(n, ".fpm") })
	w.dmz.step(t)
	if reqs := withSuffix(files(t, w.dmz.out), ".fpr"); len(reqs) != 1 {
		t.Fatalf("the receiver still takes the peer's manifests as stale: out/ holds %v", files(t, w.dmz.out))
	}
}
