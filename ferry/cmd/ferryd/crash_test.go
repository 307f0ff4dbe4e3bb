package main

import (
	"strings"
	"testing"

	"finepay/shared/logging"
)

// FERRYD_CRASH_AT is inert when unset, armed by known failpoint names, and refused (ferryd does
// not start) when it names anything else.
func TestCrashHookFromEnv(t *testing.T) {
	log := logging.Discard()
	t.Setenv(crashEnv, "")
	if f, err := crashHook(log); f != nil || err != nil {
		t.Fatalf("unset: %v, %v", f != nil, err)
	}
	t.Setenv(crashEnv, "after-commit-before-ack:3,after-outbox-read")
	if f, err := crashHook(log); f == nil || err != nil {
		t.Fatalf("valid spec: %v, %v", f != nil, err)
	}
	t.Setenv(crashEnv, "after-lunch")
	if _, err := crashHook(log); err == nil || !strings.Contains(err.Error(), crashEnv) {
		t.Fatalf("unknown point: %v", err)
	}
}
