package payername_test

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"finepay/sandbox/internal/payername"
	"finepay/sandbox/internal/testpki"
)

func TestMask(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"张三": "张*", "欧阳娜娜": "欧***", "李": "*", "": "", " 王五 ": "王*"} {
		if got := payername.Mask(in); got != want {
			t.Errorf("Mask(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestOpen(t *testing.T) {
	t.Parallel()
	p := testpki.Get(t)
	enc := func(s string) string {
		ct, err := p.Box.Enc.Cert.PublicKey().Encrypt(rand.Reader, []byte(s))
		if err != nil {
			t.Fatal(err)
		}
		return base64.StdEncoding.EncodeToString(ct)
	}
	if name, err := payername.Open(p.Box.Enc.Key, enc("张三丰")); err != nil || name != "张三丰" {
		t.Fatalf("Open: %q %v", name, err)
	}
	for label, in := range map[string]string{
		"fail/not-base64": "张三",
		"fail/other-key": func() string {
			ct, _ := p.Core.Enc.Cert.PublicKey().Encrypt(rand.Reader, []byte("张三"))
			return base64.StdEncoding.EncodeToString(ct)
		}(),
		"fail/empty":    enc("  "),
		"fail/too-long": enc(strings.Repeat("张", 65)),
		"fail/control":  enc("张\x00三"),
		"fail/not-utf8": enc("\xff\xfe"),
	} {
		if _, err := payername.Open(p.Box.Enc.Key, in); !errors.Is(err, payername.ErrInvalid) {
			t.Errorf("%s: %v", label, err)
		}
	}
}
