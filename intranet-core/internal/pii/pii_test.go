package pii_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"finepay/intranet-core/internal/pii"
	"finepay/shared/logging"
)

func TestMaskName(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"", ""}, {"张", "*"}, {"张三", "张*"}, {"张三丰", "张**"}, {"欧阳娜娜", "欧***"},
		{" 李四 ", "李*"}, {"阿依古丽·买买提", "阿*******"},
	} {
		if got := pii.MaskName(tc.in); got != tc.want {
			t.Errorf("MaskName(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestMaskPlate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"黑A12345", "黑A****5"}, {"黑AD12345", "黑A*****5"}, {"黑A1234挂", "黑A****挂"}, {"AB", "**"},
	} {
		if got := pii.MaskPlate(tc.in); got != tc.want {
			t.Errorf("MaskPlate(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func newVault(t *testing.T) *pii.Vault {
	t.Helper()
	k := make([]byte, pii.KeySize)
	rand.Read(k)
	v, err := pii.NewVault(k, nil)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestVaultSealOpen(t *testing.T) {
	t.Parallel()
	v := newVault(t)
	sealed, err := v.Seal("bills.party_name", "B1", "张三丰")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("张三丰")) {
		t.Fatal("sealed value holds the clear text")
	}
	got, err := v.Open("bills.party_name", "B1", sealed)
	if err != nil || got != "张三丰" {
		t.Fatalf("Open = %q, %v", got, err)
	}
	for name, open := range map[string]func() error{
		"fail/other-row":    func() error { _, err := v.Open("bills.party_name", "B2", sealed); return err },
		"fail/other-column": func() error { _, err := v.Open("bills.plate", "B1", sealed); return err },
		"fail/other-key":    func() error { _, err := newVault(t).Open("bills.party_name", "B1", sealed); return err },
		"fail/tampered": func() error {
			b := bytes.Clone(sealed)
			b[len(b)-1] ^= 1
			_, err := v.Open("bills.party_name", "B1", b)
			return err
		},
		"fail/short": func() error { _, err := v.Open("bills.party_name", "B1", sealed[:10]); return err },
	} {
		if err := open(); !errors.Is(err, pii.ErrOpen) {
			t.Errorf("%s: err = %v, want ErrOpen", name, err)
		}
	}
	again, _ := v.Seal("bills.party_name", "B1", "张三丰")
	if bytes.Equal(again, sealed) {
		t.Error("two seals of one value are equal: nonce reused")
	}
}

func TestVaultIndex(t *testing.T) {
	t.Parallel()
	v := newVault(t)
	if v.Index("name", "张三") != v.Index("name", " 张三 ") {
		t.Error("index depends on surrounding space")
	}
	if v.Index("name", "张三") == v.Index("plate", "张三") {
		t.Error("index does not separate kinds")
	}
	if v.Index("name", "张三") == newVault(t).Index("name", "张三") {
		t.Error("index does not depend on the key")
	}
}

func TestLoadOrCreateKey(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "sub", "core-data.key")
	k1, err := pii.LoadOrCreateKey(path, nil, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", st.Mode().Perm())
	}
	k2, err := pii.LoadOrCreateKey(path, nil, logging.Discard())
	if err != nil || !bytes.Equal(k1, k2) || len(k1) != pii.KeySize {
		t.Fatalf("second load = %x, %v; first %x", k2, err, k1)
	}
	bad := filepath.Join(t.TempDir(), "bad.key")
	os.WriteFile(bad, []byte("abcd\n"), 0o600)
	if _, err := pii.LoadOrCreateKey(bad, nil, logging.Discard()); err == nil {
		t.Error("a short key file was accepted")
	}
}
