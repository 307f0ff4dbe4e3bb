package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"

	"finepay/ferry/spool/gapsim"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The command moves files both ways, stops by itself after -max-files, and reports.
func TestGapsimRuns(t *testing.T) {
	root := t.TempDir()
	dirs := map[string]string{}
	for _, d := range []string{"a-out", "a-in", "b-out", "b-in"} {
		dirs[d] = filepath.Join(root, d)
		os.Mkdir(dirs[d], 0o700)
	}
	os.WriteFile(filepath.Join(dirs["a-out"], "one.fpb"), []byte("one"), 0o600)
	os.WriteFile(filepath.Join(dirs["b-out"], "two.fpa"), []byte("two"), 0o600)
	var out bytes.Buffer
	err := run(context.Background(), []string{"-a-out", dirs["a-out"], "-b-in", dirs["b-in"], "-b-out", dirs["b-out"],
		"-a-in", dirs["a-in"], "-max-files", "2", "-max-delay", "1ms", "-poll", "1ms"}, &out, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var st gapsim.Stats
	if err := json.Unmarshal(out.Bytes(), &st); err != nil || st.Taken != 2 || st.Delivered != 2 {
		t.Fatalf("report %q: %+v, %v", out.String(), st, err)
	}
	for _, p := range []string{filepath.Join(dirs["b-in"], "one.fpb"), filepath.Join(dirs["a-in"], "two.fpa")} {
		if _, err := os.Stat(p); err != nil {
			t.Error(err)
		}
	}
}

func TestFlagsRefused(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{},
		{"-a-out", dir},
		{"-a-out", dir, "-b-in", dir, "-b-out", dir},
		{"-a-out", dir, "-b-in", dir, "-loss", "2"},
	} {
		if err := run(context.Background(), args, io.Discard, io.Discard); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}
