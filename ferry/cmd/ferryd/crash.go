package main

import (
	"fmt"
	"log/slog"
	"os"

	"finepay/ferry/internal/failpoint"
	"finepay/ferry/relay"
)

// crashEnv names the crash tests' variable: NAME[:COUNT],... of relay.Failpoints. When set,
// ferryd kills itself with SIGKILL the COUNT-th time it reaches point NAME. It is not a flag:
// nothing in production sets it.
const crashEnv = "FERRYD_CRASH_AT"

// crashHook returns the relay's failpoint function from FERRYD_CRASH_AT, or nil when unset.
func crashHook(log *slog.Logger) (func(string), error) {
	spec := os.Getenv(crashEnv)
	if spec == "" {
		return nil, nil
	}
	set, err := failpoint.Parse(spec, relay.Failpoints, func(name string) {
		log.Warn("failpoint reached: killing this process with SIGKILL", "failpoint", name, "env", crashEnv)
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", crashEnv, err)
	}
	log.Warn("crash test: failpoints armed", "env", crashEnv, "spec", spec)
	return set.Hit, nil
}
