package spool

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// A write that fails half way (a full disk) leaves nothing in out/ or .tmp/; the next one puts
// the whole file in place; a file of the same name is replaced whole.
func TestWriteFailureLeavesNoHalfFile(t *testing.T) {
	t.Parallel()
	o := &outDir{dir: t.TempDir()}
	if err := o.prepare("ferry-dmz"); err != nil {
		t.Fatal(err)
	}
	data := []byte(strings.Repeat("bundle bytes ", 1000))
	o.failAfter = func(string) error { return syscall.ENOSPC }
	if err := o.write("a.fpb", data); err == nil {
		t.Fatal("the write did not fail")
	}
	if got := files(t, o.dir); len(got) != 0 {
		t.Fatalf("out/ holds %v", got)
	}
	if got := files(t, filepath.Join(o.dir, tmpDir)); len(got) != 0 {
		t.Fatalf(".tmp/ holds %v", got)
	}
	o.failAfter = nil
	if err := o.write("a.fpb", data); err != nil {
		t.Fatal(err)
	}
	if err := o.write("a.fpb", data[:10]); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(o.dir, "a.fpb")); string(got) != string(data[:10]) {
		t.Fatalf("out/a.fpb holds %d bytes", len(got))
	}
	if n, err := o.size(); err != nil || n != 10 {
		t.Fatalf("size %d, %v", n, err)
	}
}

// A directory that cannot be synced after the rename fails the write, and the file does not stay
// in out/, where nothing would count or remove it.
func TestWriteFailsWholeWhenTheDirectoryCannotBeSynced(t *testing.T) {
	t.Parallel()
	o := &outDir{dir: t.TempDir()}
	if err := o.prepare("ferry-dmz"); err != nil {
		t.Fatal(err)
	}
	o.failSync = func(string) error { return syscall.EIO }
	if err := o.write("a.fpm", []byte("manifest")); err == nil {
		t.Fatal("the write did not fail")
	}
	if got := files(t, o.dir); len(got) != 0 {
		t.Fatalf("out/ holds %v", got)
	}
	if n, err := o.size(); err != nil || n != 0 {
		t.Fatalf("size %d, %v", n, err)
	}
	o.failSync = nil
	if err := o.write("a.fpm", []byte("manifest")); err != nil {
		t.Fatal(err)
	}
	if got := files(t, o.dir); len(got) != 1 || got[0] != "a.fpm" {
		t.Fatalf("out/ holds %v", got)
	}
}

// Start-up clears .tmp/ and this node's own files in out/, and nothing else.
func TestPrepareClearsOwnLeftovers(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	id := "0123456789abcdef0123456789abcdef"
	for _, p := range []string{
		".tmp/ferry-dmz-to-core.0-1-1-" + id + ".fpb.123",
		"ferry-dmz-to-core.0-1-1-" + id + ".fpb",
		"ferry-dmz-manifest-5-5-" + id + ".fpm",
		"ferry-intranet-to-gateway.0-1-1-" + id + ".fpb",
		"operator-notes.txt",
	} {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o700)
		if err := os.WriteFile(filepath.Join(dir, p), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := (&outDir{dir: dir}).prepare("ferry-dmz"); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(files(t, dir), " ")
	if want := "ferry-intranet-to-gateway.0-1-1-" + id + ".fpb operator-notes.txt"; got != want {
		t.Fatalf("left %q, want %q", got, want)
	}
	if left := files(t, filepath.Join(dir, tmpDir)); len(left) != 0 {
		t.Fatalf(".tmp/ holds %v", left)
	}
}

// The spool only reads and writes local files: nothing in it can open a connection, so the
// DMZ side dials nothing on this transport either.
func TestSpoolDialsNothing(t *testing.T) {
	t.Parallel()
	paths, _ := filepath.Glob("*.go")
	gapsim, _ := filepath.Glob("gapsim/*.go")
	for _, p := range append(paths, gapsim...) {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), p, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if path == "net" || strings.HasPrefix(path, "net/") || strings.Contains(path, "tls") || path == "finepay/ferry/link" {
				t.Errorf("%s imports %s", p, path)
			}
		}
	}
}
