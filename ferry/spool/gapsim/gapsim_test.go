package gapsim

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func run(t *testing.T, seed int64) (Stats, []string) {
	t.Helper()
	from, to := t.TempDir(), t.TempDir()
	for i := range 200 {
		if err := os.WriteFile(filepath.Join(from, fmt.Sprintf("f-%03d.fpb", i)), []byte(fmt.Sprintf("file %d with some bytes", i)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	sim, err := New(Config{Routes: []Route{{From: from, To: to}}, Seed: seed, MaxFiles: 200, Poll: time.Millisecond,
		Faults: Faults{MaxDelay: 5 * time.Millisecond, Reorder: 0.2, Duplicate: 0.2, Loss: 0.1, Truncate: 0.1, Complete: 0.5, Rename: 0.1, Foreign: 0.1}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := sim.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ctx.Err() != nil {
		t.Fatal("the simulator did not stop by itself")
	}
	entries, _ := os.ReadDir(to)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return st, names
}

// Bounded by its file count, it stops by itself and delivers what it held; the same seed
// gives the same faults, file by file, whatever the timing.
func TestReplayableAndBounded(t *testing.T) {
	a, na := run(t, 7)
	b, nb := run(t, 7)
	if !reflect.DeepEqual(a, b) || !reflect.DeepEqual(na, nb) {
		t.Fatalf("same seed, different runs:\n%+v\n%+v", a, b)
	}
	if a.Taken != 200 || a.Lost == 0 || a.Duplicated == 0 || a.Truncated == 0 || a.Foreign == 0 || a.Renamed == 0 {
		t.Fatalf("faults not all exercised: %+v", a)
	}
	if c, _ := run(t, 8); reflect.DeepEqual(a, c) {
		t.Fatal("another seed, the same run")
	}
}

func TestConfigRefused(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"fail/no-routes", Config{}},
		{"fail/missing-dir", Config{Routes: []Route{{From: dir, To: filepath.Join(dir, "nope")}}}},
		{"fail/probability", Config{Routes: []Route{{From: dir, To: dir}}, Faults: Faults{Loss: 1.5}}},
		{"fail/delays", Config{Routes: []Route{{From: dir, To: dir}}, Faults: Faults{MinDelay: time.Second}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.cfg); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}
