package config

import (
	"strings"
	"testing"
	"time"
)

func TestParsePrecedence(t *testing.T) {
	t.Parallel()
	env := map[string]string{"GW_LISTEN": ":9999", "GW_POLL": "250ms", "GW_NAME": "from-env"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	s := New("gateway", "GW")
	listen := s.String("listen", ":8080", "address")
	poll := s.Duration("poll", time.Second, "poll interval")
	name := s.String("name", "def", "name")
	lanes := s.Int("lanes", 4, "lanes")
	if err := s.parse([]string{"-name", "from-flag"}, lookup); err != nil {
		t.Fatal(err)
	}
	if *listen != ":9999" || *poll != 250*time.Millisecond || *name != "from-flag" || *lanes != 4 {
		t.Fatalf("got listen=%s poll=%s name=%s lanes=%d", *listen, *poll, *name, *lanes)
	}
	if !strings.Contains(s.Table(), "| `GW_LISTEN` | `-listen` | `:8080` | address |") {
		t.Fatalf("table:\n%s", s.Table())
	}
}

func TestParseBadEnv(t *testing.T) {
	t.Parallel()
	s := New("x", "X")
	s.Int("lanes", 4, "lanes")
	err := s.parse(nil, func(k string) (string, bool) { return "four", k == "X_LANES" })
	if err == nil || !strings.Contains(err.Error(), "X_LANES") {
		t.Fatalf("err = %v", err)
	}
}
