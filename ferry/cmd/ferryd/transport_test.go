package main

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"finepay/ferry/internal/fixture"
	"finepay/ferry/spool/gapsim"
	"finepay/ferry/sqldb"
)

// Both ferryds on the spool transport, through a simulated gap appliance that loses and
// duplicates files: messages cross both ways exactly once, neither side listens for the link
// or dials, /readyz and /metrics work, and both shut down on cancel.
func TestFerrydSpool(t *testing.T) {
	gw, core := migrated(t, sqldb.Postgres), migrated(t, sqldb.Postgres)
	pki := fixture.NewPKI(t)
	pki.Node(t, fixture.DMZ)
	pki.Node(t, fixture.Intranet)
	root := t.TempDir()
	dir := func(p string) string {
		d := filepath.Join(root, p)
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		return d
	}
	common := []string{"-certs", pki.Dir, "-metrics-listen", "127.0.0.1:0", "-poll", "20ms", "-linger", "5ms",
		"-resend-after", "1s", "-transport", "spool", "-spool-poll", "20ms", "-spool-manifest-interval", "200ms", "-log-level", "debug"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dmz := start(t, ctx, false, append([]string{"-side", "dmz", "-db", gw.URL, "-quarantine", dir("dmz/quarantine"),
		"-spool-out", dir("dmz/out"), "-spool-in", dir("dmz/in"), "-listen", "127.0.0.1:1"}, common...)...)
	in := start(t, ctx, false, append([]string{"-side", "intranet", "-db", core.URL, "-quarantine", dir("intranet/quarantine"),
		"-spool-out", dir("intranet/out"), "-spool-in", dir("intranet/in"), "-peer-url", "https://127.0.0.1:1"}, common...)...)

	sim, err := gapsim.New(gapsim.Config{Seed: 1, Poll: 5 * time.Millisecond,
		Routes: []gapsim.Route{{From: dir("intranet/out"), To: dir("dmz/in")}, {From: dir("dmz/out"), To: dir("intranet/in")}},
		Faults: gapsim.Faults{MaxDelay: 20 * time.Millisecond, Loss: 0.1, Duplicate: 0.1}})
	if err != nil {
		t.Fatal(err)
	}
	simCtx, stopSim := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _, _ = sim.Run(simCtx) })
	defer func() { stopSim(); wg.Wait() }()

	const n = 40
	for i := range n {
		fixture.Put(t, core, 1, fixture.Bill(t, i))
		fixture.Put(t, gw, 1, fixture.Payment(t, i))
	}
	fixture.Eventually(t, time.Minute, "every message each way, outboxes retired", func() bool {
		return count(t, gw, `SELECT count(*) FROM ferry_inbox`) == n && count(t, core, `SELECT count(*) FROM ferry_inbox`) == n &&
			count(t, gw, `SELECT count(*) FROM ferry_outbox`) == 0 && count(t, core, `SELECT count(*) FROM ferry_outbox`) == 0
	})
	for _, f := range []*ferryd{dmz, in} {
		if code, body := get(t, f.metrics+"/readyz"); code != http.StatusOK {
			t.Fatalf("readyz %d %s", code, body)
		}
		_, metrics := get(t, f.metrics+"/metrics")
		for _, want := range []string{"ferry_spool_full 0", "ferry_spool_files_total", "ferry_spool_out_bytes"} {
			if !strings.Contains(metrics, want) {
				t.Errorf("/metrics lacks %q", want)
			}
		}
		f.log.mu.Lock()
		for _, line := range f.log.lines {
			if strings.Contains(line, `"listener":"link"`) {
				t.Errorf("a spool ferry listens for the link: %s", line)
			}
		}
		f.log.mu.Unlock()
	}
	stopSim()
	cancel()
	for _, f := range []*ferryd{dmz, in} {
		select {
		case err := <-f.done:
			if err != nil {
				t.Fatalf("ferryd: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("ferryd did not stop")
		}
	}
	if n := count(t, gw, `SELECT count(*) FROM ferry_audit WHERE event = 'admin.start' AND reason LIKE '%transport=spool%'`); n != 1 {
		t.Errorf("%d admin.start records naming the spool transport", n)
	}
}

func TestTransportFlagsRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"fail/unknown-transport", []string{"-side", "dmz", "-db", "sqlite:x", "-transport", "carrier-pigeon"}},
		{"fail/spool-without-dirs", []string{"-side", "dmz", "-db", "sqlite:x", "-transport", "spool"}},
		{"fail/spool-same-dir", []string{"-side", "intranet", "-db", "sqlite:x", "-transport", "spool", "-spool-out", "d", "-spool-in", "d/"}},
		{"fail/spool-bound", []string{"-side", "dmz", "-db", "sqlite:x", "-transport", "spool", "-spool-out", "a", "-spool-in", "b", "-spool-max-bytes", "0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set, f := newFlags()
			if err := set.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			if _, err := f.resolve(); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	// The spool transport needs no link URL.
	set, f := newFlags()
	if err := set.Parse([]string{"-side", "intranet", "-db", "sqlite:x", "-transport", "spool", "-spool-out", "a", "-spool-in", "b", "-peer-url", "none"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.resolve(); err != nil {
		t.Fatalf("refused: %v", err)
	}
}
