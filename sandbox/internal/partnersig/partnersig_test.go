package partnersig_test

import (
	"crypto/rand"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"finepay/sandbox/internal/partnersig"
	"finepay/sandbox/internal/testpki"
)

func TestSigningStrings(t *testing.T) {
	t.Parallel()
	// SM3("") and SM3("abc") from GB/T 32905.
	const emptySM3 = "1ab21d8355cfa17f8e61194831e81a8f22bec8c728fefb747ed035eb5082aa2b"
	const abcSM3 = "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
	got := string(partnersig.RequestString("core", "req-1", 1795000000, "GET", "/ereceipt/v1/verify?code=1&number=2", nil))
	want := "core\nreq-1\n1795000000\nGET\n/ereceipt/v1/verify?code=1&number=2\n" + emptySM3
	if got != want {
		t.Errorf("request string\n got %q\nwant %q", got, want)
	}
	got = string(partnersig.ResponseString("sandbox", "req-1", 1795000000, 409, []byte("abc")))
	want = "sandbox\nreq-1\n1795000000\n409\n\n" + abcSM3
	if got != want {
		t.Errorf("response string\n got %q\nwant %q", got, want)
	}
}

func TestRequestRoundTrip(t *testing.T) {
	t.Parallel()
	p := testpki.Get(t)
	now := time.Unix(1795000000, 0)
	body := []byte(`{"decision_no":"230102100012345"}`)
	req, _ := http.NewRequest(http.MethodPost, "http://sandbox.test/nontax/v1/forms?x=1", strings.NewReader(string(body)))
	if err := partnersig.SignRequest(req, body, "core", "r-1", now, p.Core.Sign.Key, rand.Reader); err != nil {
		t.Fatal(err)
	}
	env, err := partnersig.Parse(req.Header)
	if err != nil {
		t.Fatal(err)
	}
	pub := p.Core.Sign.Cert.PublicKey()
	if err := partnersig.VerifyRequest(env, "POST", "/nontax/v1/forms?x=1", body, now.Add(299*time.Second), pub); err != nil {
		t.Fatalf("verify: %v", err)
	}
	cases := []struct {
		name   string
		method string
		path   string
		body   string
		now    time.Time
		want   error
	}{
		{"fail/other-body", "POST", "/nontax/v1/forms?x=1", `{"decision_no":"230102100012346"}`, now, partnersig.ErrSignature},
		{"fail/other-path", "POST", "/nontax/v1/forms?x=2", string(body), now, partnersig.ErrSignature},
		{"fail/other-method", "PUT", "/nontax/v1/forms?x=1", string(body), now, partnersig.ErrSignature},
		{"fail/late", "POST", "/nontax/v1/forms?x=1", string(body), now.Add(301 * time.Second), partnersig.ErrTimestamp},
		{"fail/early", "POST", "/nontax/v1/forms?x=1", string(body), now.Add(-301 * time.Second), partnersig.ErrTimestamp},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := partnersig.VerifyRequest(env, tc.method, tc.path, []byte(tc.body), tc.now, pub)
			if !errors.Is(err, tc.want) {
				t.Errorf("err %v, want %v", err, tc.want)
			}
		})
	}
	if err := partnersig.VerifyRequest(env, "POST", "/nontax/v1/forms?x=1", body, now, p.Rogue.Sign.Cert.PublicKey()); !errors.Is(err, partnersig.ErrSignature) {
		t.Errorf("another key: %v", err)
	}
}

func TestResponseRoundTrip(t *testing.T) {
	t.Parallel()
	p := testpki.Get(t)
	now := time.Now()
	h := http.Header{}
	if err := partnersig.SignResponse(h, "sandbox", "r-9", 200, []byte(`{"status":"accepted"}`), now, p.Box.Sign.Key, rand.Reader); err != nil {
		t.Fatal(err)
	}
	pub := p.Box.Sign.Cert.PublicKey()
	if err := partnersig.VerifyResponse(h, "sandbox", "r-9", 200, []byte(`{"status":"accepted"}`), now, pub); err != nil {
		t.Fatalf("verify: %v", err)
	}
	for name, check := range map[string]func() error{
		"fail/status": func() error {
			return partnersig.VerifyResponse(h, "sandbox", "r-9", 201, []byte(`{"status":"accepted"}`), now, pub)
		},
		"fail/body": func() error {
			return partnersig.VerifyResponse(h, "sandbox", "r-9", 200, []byte(`{"status":"refused"}`), now, pub)
		},
		"fail/request-id": func() error {
			return partnersig.VerifyResponse(h, "sandbox", "r-8", 200, []byte(`{"status":"accepted"}`), now, pub)
		},
		"fail/app": func() error {
			return partnersig.VerifyResponse(h, "finance", "r-9", 200, []byte(`{"status":"accepted"}`), now, pub)
		},
	} {
		if err := check(); !errors.Is(err, partnersig.ErrSignature) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestParse(t *testing.T) {
	t.Parallel()
	full := func() http.Header {
		h := http.Header{}
		h.Set(partnersig.HeaderApp, "core")
		h.Set(partnersig.HeaderRequestID, "abc_DEF-123")
		h.Set(partnersig.HeaderTimestamp, "1795000000")
		h.Set(partnersig.HeaderSignature, "MEUCIQ==")
		return h
	}
	if _, err := partnersig.Parse(full()); err != nil {
		t.Fatalf("valid headers: %v", err)
	}
	cases := []struct {
		name string
		edit func(http.Header)
		want error
	}{
		{"fail/no-app", func(h http.Header) { h.Del(partnersig.HeaderApp) }, partnersig.ErrMissing},
		{"fail/no-signature", func(h http.Header) { h.Del(partnersig.HeaderSignature) }, partnersig.ErrMissing},
		{"fail/id-too-long", func(h http.Header) { h.Set(partnersig.HeaderRequestID, strings.Repeat("a", 65)) }, partnersig.ErrRequestID},
		{"fail/id-charset", func(h http.Header) { h.Set(partnersig.HeaderRequestID, "a b") }, partnersig.ErrRequestID},
		{"fail/timestamp-ms", func(h http.Header) { h.Set(partnersig.HeaderTimestamp, "1795000000.5") }, partnersig.ErrTimestamp},
		{"fail/signature-not-base64", func(h http.Header) { h.Set(partnersig.HeaderSignature, "***") }, partnersig.ErrSignature},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := full()
			tc.edit(h)
			if _, err := partnersig.Parse(h); !errors.Is(err, tc.want) {
				t.Errorf("err %v, want %v", err, tc.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add("core", "req-1", "1795000000", "MEUCIQ==")
	f.Add("", "a b", "x", "***")
	f.Fuzz(func(t *testing.T, app, rid, ts, sig string) {
		h := http.Header{}
		h.Set(partnersig.HeaderApp, app)
		h.Set(partnersig.HeaderRequestID, rid)
		h.Set(partnersig.HeaderTimestamp, ts)
		h.Set(partnersig.HeaderSignature, sig)
		e, err := partnersig.Parse(h)
		if err == nil && (!partnersig.ValidRequestID(e.RequestID) || e.App == "" || len(e.Signature) == 0 && sig != "") {
			t.Fatalf("accepted %q %q %q %q as %+v", app, rid, ts, sig, e)
		}
	})
}
