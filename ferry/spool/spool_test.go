package spool

import (
	"context"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"finepay/ferry/internal/fixture"
	"finepay/ferry/spool/gapsim"
	"finepay/shared/envelope"
)

// seed is the appliance simulator's seed: FINEPAY_GAPSIM_SEED replays a run.
func seed(t *testing.T) int64 {
	if s := os.Getenv("FINEPAY_GAPSIM_SEED"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	return 20250301
}

// appliance runs the simulator between the two sides' directories until the test ends or stop
// is called; stop returns its counts.
func (w *world) appliance(t *testing.T, f gapsim.Faults, routes ...gapsim.Route) (stop func() gapsim.Stats) {
	t.Helper()
	if routes == nil {
		routes = []gapsim.Route{{From: w.in.out, To: w.dmz.in}, {From: w.dmz.out, To: w.in.in}}
	}
	sim, err := gapsim.New(gapsim.Config{Routes: routes, Faults: f, Seed: seed(t), Poll: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var stats gapsim.Stats
	wg.Go(func() {
		var err error
		if stats, err = sim.Run(ctx); err != nil {
			t.Errorf("gapsim: %v", err)
		}
	})
	var once sync.Once
	stop = func() gapsim.Stats {
		once.Do(func() { cancel(); wg.Wait() })
		return stats
	}
	t.Cleanup(func() { stop() })
	return stop
}

func bills(t *testing.T, n int) []envelope.Envelope {
	out := make([]envelope.Envelope, n)
	for i := range out {
		out[i] = fixture.Bill(t, i)
	}
	return out
}

func payments(t *testing.T, n int) []envelope.Envelope {
	out := make([]envelope.Envelope, n)
	for i := range out {
		out[i] = fixture.Payment(t, i)
	}
	return out
}

// delivered waits until both inboxes hold exactly what both outboxes held (same message IDs,
// lanes and sequences: exactly once, in lane order) and both outboxes are retired.
func (w *world) delivered(t *testing.T, within time.Duration, wantGW, wantCore placed) {
	t.Helper()
	fixture.Eventually(t, within, "every message delivered and both outboxes retired", func() bool {
		return count(t, w.dmz.db, `SELECT count(*) FROM ferry_inbox`) >= len(wantGW) &&
			count(t, w.in.db, `SELECT count(*) FROM ferry_inbox`) >= len(wantCore) &&
			count(t, w.dmz.db, `SELECT count(*) FROM ferry_outbox`) == 0 &&
			count(t, w.in.db, `SELECT count(*) FROM ferry_outbox`) == 0
	})
	for _, c := range []struct {
		name string
		got  placed
		want placed
	}{{"gateway inbox", inboxPlaces(t, w.dmz.db), wantGW}, {"core inbox", inboxPlaces(t, w.in.db), wantCore}} {
		if !maps.Equal(c.got, c.want) {
			t.Errorf("%s: %d messages, want %d, or not at their lane and sequence", c.name, len(c.got), len(c.want))
		}
	}
	for _, db := range []*side{w.dmz, w.in} {
		if n := count(t, db.db, `SELECT count(*) FROM ferry_lane_out l LEFT JOIN ferry_lane_acked a ON a.lane = l.lane
		WHERE coalesce(a.acked_seq, 0) <> l.last_seq`); n != 0 {
			t.Errorf("%s: %d lanes not acknowledged to the end", db.name, n)
		}
	}
}

// quarantined waits until every digest in sums is a quarantined file of either side, and checks
// that each quarantined file has its bundle.rejected record.
func (w *world) quarantined(t *testing.T, sums []string) {
	t.Helper()
	have := func() map[string]string { // file name → side
		m := map[string]string{}
		for _, sd := range []*side{w.dmz, w.in} {
			entries, _ := os.ReadDir(sd.quarDir)
			for _, e := range entries {
				m[e.Name()] = sd.name
			}
		}
		return m
	}
	var missing []string
	fixture.Eventually(t, 30*time.Second, "every foreign and truncated file quarantined and audited", func() bool {
		h := have()
		for _, s := range sums {
			if _, ok := h[s+".bundle"]; !ok {
				return false
			}
		}
		reasons := map[string]string{}
		for _, sd := range []*side{w.dmz, w.in} {
			for _, r := range records(t, sd.db) {
				if r.Event == "bundle.rejected" && r.Result == "rejected" {
					reasons[sd.name] += r.Reason + "\n"
				}
			}
		}
		missing = nil
		for name, sideName := range h {
			if !strings.Contains(reasons[sideName], "quarantined as "+name) {
				missing = append(missing, sideName+": "+name)
			}
		}
		return len(missing) == 0
	})
}

// Through an appliance that delays, reorders, duplicates, loses, truncates, renames and adds
// files of its own: every message arrives exactly once in lane order both ways, both outboxes
// are retired, and every foreign or truncated file is quarantined and audited, never applied.
func TestSpoolThroughMisbehavingAppliance(t *testing.T) {
	w := setup(t, options{})
	const n = 500
	fixture.Put(t, w.in.db, 2, bills(t, n)...)
	fixture.Put(t, w.dmz.db, 2, payments(t, n)...)
	wantGW, wantCore := outboxPlaces(t, w.in.db), outboxPlaces(t, w.dmz.db)
	w.run(t)
	stop := w.appliance(t, gapsim.Faults{MinDelay: 0, MaxDelay: 30 * time.Millisecond, Reorder: 0.1, Duplicate: 0.1,
		Loss: 0.07, Truncate: 0.06, Complete: 0.5, Rename: 0.1, Foreign: 0.04})
	w.delivered(t, 3*time.Minute, wantGW, wantCore)
	st := stop()
	t.Logf("appliance (seed %d): %+v", seed(t), st)
	if st.Lost == 0 || st.Duplicated == 0 || st.Truncated == 0 || st.Foreign == 0 || st.Renamed == 0 {
		t.Errorf("the appliance did not exercise every fault: %+v", st)
	}
	w.quarantined(t, append(st.ForeignSums, st.PartialSums...))
	recs := append(records(t, w.dmz.db), records(t, w.in.db)...)
	if countEvents(recs, "bundle.duplicate", "ok") == 0 {
		t.Error("no duplicate was acknowledged again")
	}
	resends := metric(t, w.dmz.reg, "ferry_spool_resends_total") + metric(t, w.in.reg, "ferry_spool_resends_total")
	if resends == 0 {
		t.Error("lost bundles were never written again")
	}
	t.Logf("resends %v, missing reported %d", resends, countEvents(recs, EventMissing, ""))
}

// One-way with no way back: the sender writes each bundle again on its doubling schedule, the
// receiver applies each message once and writes no acknowledgements or requests, and the
// sender retires its rows unconfirmed after RetireAfter (audited as bundle.retired).
func TestOneWayWithoutWayBack(t *testing.T) {
	w := setup(t, options{oneWay: true, retireAfter: 5 * time.Second, resendAfter: 100 * time.Millisecond})
	fixture.Put(t, w.in.db, 2, bills(t, 200)...)
	want := outboxPlaces(t, w.in.db)
	w.run(t)
	w.appliance(t, gapsim.Faults{MaxDelay: 20 * time.Millisecond, Reorder: 0.1, Duplicate: 0.1, Loss: 0.1},
		gapsim.Route{From: w.in.out, To: w.dmz.in})
	fixture.Eventually(t, time.Minute, "every message applied", func() bool {
		return count(t, w.dmz.db, `SELECT count(*) FROM ferry_inbox`) >= len(want)
	})
	if got := inboxPlaces(t, w.dmz.db); !maps.Equal(got, want) {
		t.Fatalf("%d messages, want %d, or not at their lane and sequence", len(got), len(want))
	}
	fixture.Eventually(t, time.Minute, "the outbox retired after RetireAfter", func() bool {
		return count(t, w.in.db, `SELECT count(*) FROM ferry_outbox`) == 0
	})
	recs := records(t, w.in.db)
	if countEvents(recs, EventRetired, "ok") == 0 || countEvents(recs, "bundle.acknowledged", "") != 0 {
		t.Errorf("retired %d times, acknowledged %d times", countEvents(recs, EventRetired, "ok"), countEvents(recs, "bundle.acknowledged", ""))
	}
	if back := append(withSuffix(files(t, w.dmz.out), ".fpa"), withSuffix(files(t, w.dmz.out), ".fpr")...); len(back) != 0 {
		t.Errorf("the one-way receiver wrote %v", back)
	}
	if metric(t, w.in.reg, "ferry_spool_resends_total") == 0 {
		t.Error("nothing was written again")
	}
	if metric(t, w.in.reg, "ferry_spool_retired_unconfirmed_total") == 0 {
		t.Error("ferry_spool_retired_unconfirmed_total not counted")
	}
}

// One-way with the peer's manifests coming back: they confirm what arrived, so the sender
// retires its rows at once (bundle.acknowledged, citing the manifest) instead of after
// RetireAfter.
func TestOneWayConfirmedByManifest(t *testing.T) {
	w := setup(t, options{oneWay: true, retireAfter: time.Hour, resendAfter: 300 * time.Millisecond})
	fixture.Put(t, w.in.db, 2, bills(t, 200)...)
	want := outboxPlaces(t, w.in.db)
	w.run(t)
	w.appliance(t, gapsim.Faults{MaxDelay: 20 * time.Millisecond, Duplicate: 0.1, Loss: 0.1})
	w.delivered(t, time.Minute, want, placed{})
	recs := records(t, w.in.db)
	confirmed := 0
	for _, r := range recs {
		if r.Event == "bundle.acknowledged" && strings.Contains(r.Reason, "confirmed by the peer's signed manifest") {
			confirmed++
		}
	}
	if confirmed == 0 || countEvents(recs, EventRetired, "") != 0 {
		t.Errorf("%d confirmations by manifest, %d retirements by age", confirmed, countEvents(recs, EventRetired, ""))
	}
	if n := metric(t, w.in.reg, "ferry_spool_files_total"); n == 0 {
		t.Error("no file counted")
	}
}

// The outgoing spool at its bound: the sender stops writing bundles, says so (ferry_spool_full
// = 1), keeps out/ within the bound and drops nothing; once the appliance takes files, it goes
// on and everything arrives.
func TestSpoolFullThenRecovers(t *testing.T) {
	const bound = 100 << 10
	w := setup(t, options{maxBytes: bound})
	fixture.Put(t, w.in.db, 1, bills(t, 300)...)
	want := outboxPlaces(t, w.in.db)
	w.run(t)
	fixture.Eventually(t, 30*time.Second, "ferry_spool_full = 1", func() bool {
		return metric(t, w.in.reg, "ferry_spool_full") == 1
	})
	if size, err := (&outDir{dir: w.in.out}).size(); err != nil || size > bound {
		for _, n := range files(t, w.in.out) {
			st, _ := os.Stat(filepath.Join(w.in.out, n))
			t.Log(n, st.Size())
		}
		t.Fatalf("out/ holds %d bytes (bound %d), %v", size, bound, err)
	}
	if n := count(t, w.in.db, `SELECT count(*) FROM ferry_outbox`); n != 300 {
		t.Fatalf("%d outbox rows: something was dropped", n)
	}
	start := time.Now()
	w.appliance(t, gapsim.Faults{MaxDelay: 10 * time.Millisecond})
	w.delivered(t, time.Minute, want, placed{})
	t.Logf("delivered in %s", time.Since(start))
	fixture.Eventually(t, 30*time.Second, "ferry_spool_full = 0", func() bool {
		return metric(t, w.in.reg, "ferry_spool_full") == 0
	})
}

// unwritable makes dir refuse new entries until the returned function (or the test's end)
// restores it: chmod 0500, or for root, who ignores modes, the immutable attribute.
func unwritable(t *testing.T, dir string) (restore func()) {
	t.Helper()
	var lock, unlock func() error
	if os.Geteuid() != 0 {
		lock = func() error { return os.Chmod(dir, 0o500) }
		unlock = func() error { return os.Chmod(dir, 0o700) }
	} else {
		if _, err := exec.LookPath("chattr"); err != nil {
			t.Skip("running as root without chattr: cannot make a directory unwritable")
		}
		lock = func() error { return exec.Command("chattr", "+i", dir).Run() }
		unlock = func() error { return exec.Command("chattr", "-i", dir).Run() }
	}
	if err := lock(); err != nil {
		t.Skipf("cannot make %s unwritable: %v", dir, err)
	}
	if f, err := os.Create(filepath.Join(dir, "probe")); err == nil {
		f.Close()
		os.Remove(f.Name())
		unlock()
		t.Skip("the directory is still writable (file system without the immutable attribute?)")
	}
	var once sync.Once
	restore = func() {
		once.Do(func() {
			if err := unlock(); err != nil {
				t.Errorf("restore %s: %v", dir, err)
			}
		})
	}
	t.Cleanup(restore)
	return restore
}

// A directory that cannot be written (as a full disk): the writes fail, leave no half file in
// out/ or .tmp/, are counted and make ferry_spool_full 1 and Err report; nothing is lost, and
// once the directory is writable again everything arrives.
func TestUnwritableSpoolRecovers(t *testing.T) {
	w := setup(t, options{})
	restore := unwritable(t, w.in.out)
	w.run(t)
	w.appliance(t, gapsim.Faults{MaxDelay: 10 * time.Millisecond})
	fixture.Put(t, w.in.db, 1, bills(t, 50)...)
	want := outboxPlaces(t, w.in.db)
	fixture.Eventually(t, 30*time.Second, "failed writes seen", func() bool {
		return metric(t, w.in.reg, "ferry_spool_write_errors_total") > 0 && metric(t, w.in.reg, "ferry_spool_full") == 1 && w.in.s.Err() != nil
	})
	if left := files(t, w.in.out); len(left) != 0 {
		t.Fatalf("out/ holds %v after failed writes", left)
	}
	// Writes are retried all the while, so .tmp/ may hold the one in the making; none is left.
	fixture.Eventually(t, 10*time.Second, ".tmp/ without leftovers", func() bool {
		return len(files(t, filepath.Join(w.in.out, tmpDir))) == 0
	})
	if n := count(t, w.dmz.db, `SELECT count(*) FROM ferry_inbox`); n != 0 {
		t.Fatalf("%d messages crossed", n)
	}
	restore()
	w.delivered(t, time.Minute, want, placed{})
	fixture.Eventually(t, 30*time.Second, "the spool reports itself well again", func() bool {
		return w.in.s.Err() == nil && metric(t, w.in.reg, "ferry_spool_full") == 0
	})
}
