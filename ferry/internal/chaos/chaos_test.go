package chaos_test

import (
	"context"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"finepay/ferry/internal/chaos"
	"finepay/ferry/relay"
)

// The test binary doubles as the producer process: run with CHAOS_PRODUCER=1 it produces.
func TestMain(m *testing.M) {
	if os.Getenv("CHAOS_PRODUCER") == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
		code := chaos.ProduceMain(ctx, os.Args[1:], os.Stderr)
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// Both ferryds, as processes, killed with SIGKILL at every failpoint on each side, and the
// producers killed mid-stream; at the end every message is delivered exactly once, in lane
// order, and the outboxes are retired.
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("builds ferryd and runs processes")
	}
	dir := t.TempDir()
	ferryd := filepath.Join(dir, "ferryd")
	build := exec.Command("go", "build", "-o", ferryd, "finepay/ferry/cmd/ferryd")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ferryd: %v\n%s", err, out)
	}
	var kills []chaos.Kill
	for i, point := range relay.Failpoints {
		first, second := chaos.DMZ, chaos.Intranet
		if i%2 == 1 {
			first, second = second, first
		}
		kills = append(kills, chaos.Kill{Victim: first, Point: point, Count: 2}, chaos.Kill{Victim: second, Point: point, Count: 1})
		if i%2 == 1 {
			kills = append(kills, chaos.Kill{Victim: chaos.Producer})
		}
	}
	var log strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := chaos.Run(ctx, chaos.Config{
		Ferryd: ferryd, Producer: []string{os.Args[0]}, Env: []string{"CHAOS_PRODUCER=1"},
		AdminURL: chaos.AdminURL(), Dir: filepath.Join(dir, "run"), Rate: 150, Log: &log, Kills: kills,
	})
	if err != nil {
		t.Fatalf("harness: %v\n%s", err, log.String())
	}
	t.Logf("\n%s", rep)
	if !rep.OK() || len(rep.Missed) > 0 {
		t.Errorf("crash run failed; progress:\n%s", log.String())
		logs, _ := filepath.Glob(filepath.Join(dir, "run", "logs", "*.log"))
		for _, l := range logs {
			b, _ := os.ReadFile(l)
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			t.Logf("%s (last lines):\n%s", filepath.Base(l), strings.Join(lines[max(0, len(lines)-15):], "\n"))
		}
	}
	if len(rep.Kills) != len(kills) {
		t.Errorf("%d kills done, want %d", len(rep.Kills), len(kills))
	}
}
