package lookup_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"finepay/shared/gm"
	"finepay/shared/lookup"
)

var key = bytes.Repeat([]byte{7}, lookup.KeySize)

func TestHashMatchesTheDocumentedConstruction(t *testing.T) {
	t.Parallel()
	got, err := lookup.Hash(key, " 2301021000123456 ", "ab3c")
	if err != nil {
		t.Fatal(err)
	}
	want := hex.EncodeToString(gm.HMACSM3(key, []byte("finepay/lookup/v1\x1f2301021000123456\x1fAB3C")))
	if got != want || !lookup.ValidHash(got) {
		t.Fatalf("Hash = %s, want %s", got, want)
	}
	other, _ := lookup.Hash(bytes.Repeat([]byte{8}, lookup.KeySize), "2301021000123456", "AB3C")
	if other == got {
		t.Fatal("the hash does not depend on the key")
	}
	tail, err := lookup.PlateTail("黑a·b3c? ")
	if err == nil {
		t.Fatalf("PlateTail accepted a middle dot: %q", tail)
	}
	for plate, want := range map[string]string{"黑A12345": "2345", "黑AD12345": "2345", "黑A1234学": "234学", "黑a 1b3c5": "B3C5"} {
		if got, err := lookup.PlateTail(plate); err != nil || got != want {
			t.Errorf("PlateTail(%q) = %q, %v; want %q", plate, got, err, want)
		}
	}
}

func TestValidation(t *testing.T) {
	t.Parallel()
	for _, d := range []string{"", "12345678901234", "123456789012345678901", "23010210001234a", "2301021000 23456"} {
		if _, err := lookup.Hash(key, d, "2345"); !errors.Is(err, lookup.ErrDecisionNo) {
			t.Errorf("decision %q: err = %v", d, err)
		}
	}
	for _, p := range []string{"", "234", "23456", "23-5", "23 5", "２３４５x", "\xff234"} {
		if _, err := lookup.Hash(key, "230102100012345", p); !errors.Is(err, lookup.ErrPlateTail) {
			t.Errorf("plate tail %q: err = %v", p, err)
		}
	}
	if _, err := lookup.Hash(key[:16], "230102100012345", "2345"); err == nil {
		t.Error("a short key was accepted")
	}
	for _, s := range []string{"", "ABCD", string(bytes.Repeat([]byte("A"), 64))} {
		if lookup.ValidHash(s) {
			t.Errorf("ValidHash(%q)", s)
		}
	}
}

func TestLoadKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := filepath.Join(dir, "lookup.key")
	os.WriteFile(good, []byte(hex.EncodeToString(key)+"\n"), 0o600)
	if k, err := lookup.LoadKey(good); err != nil || !bytes.Equal(k, key) {
		t.Fatalf("LoadKey = %x, %v", k, err)
	}
	bad := filepath.Join(dir, "short.key")
	os.WriteFile(bad, []byte("abcd"), 0o600)
	if _, err := lookup.LoadKey(bad); err == nil {
		t.Fatal("a short key file was accepted")
	}
	if _, err := lookup.LoadKey(filepath.Join(dir, "absent")); err == nil {
		t.Fatal("an absent key file was accepted")
	}
}
