package partner_test

import (
	"context"
	"crypto/rand"
	"errors"
	"net/http"
	"testing"
	"time"

	"finepay/intranet-core/internal/partner"
	"finepay/intranet-core/internal/partner/partnertest"
	"finepay/shared/gm"
)

func newClient(t *testing.T, pki *partnertest.PKI, url string, retries int) *partner.Client {
	t.Helper()
	c, err := partner.New(partner.Config{BaseURL: url, App: "core", Signer: pki.Core.Key, PartnerKey: pki.PartnerSign.Cert.PublicKey(),
		PartnerApp: "sandbox", Retries: retries, RetryWaitMin: time.Millisecond, RetryWaitMax: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestPartnerSignedRoundTrip(t *testing.T) {
	t.Parallel()
	pki := partnertest.NewPKI(t)
	srv := partnertest.NewServer(t, pki, func(r partnertest.Request) partnertest.Reply {
		return partnertest.Reply{Body: map[string]string{"status": "accepted"}}
	})
	c := newClient(t, pki, srv.URL, 0)
	var out struct{ Status string }
	if err := c.PostJSON(context.Background(), "/window/v1/payment-results?x=1", "req-1", map[string]int{"a": 1}, &out); err != nil {
		t.Fatal(err)
	}
	if out.Status != "accepted" {
		t.Fatalf("status %q", out.Status)
	}
	r := srv.Requests()[0]
	if !r.SignatureOK || r.App != "core" || r.RequestID != "req-1" || r.Path != "/window/v1/payment-results?x=1" {
		t.Fatalf("request %+v", r)
	}
}

func TestPartnerQuickRetriesKeepRequestID(t *testing.T) {
	t.Parallel()
	pki := partnertest.NewPKI(t)
	n := 0
	srv := partnertest.NewServer(t, pki, func(r partnertest.Request) partnertest.Reply {
		n++
		if n <= 2 {
			return partnertest.Reply{Status: 500, Body: map[string]string{"code": "DOWN"}}
		}
		return partnertest.Reply{Body: map[string]string{"status": "accepted"}}
	})
	c := newClient(t, pki, srv.URL, 2)
	if err := c.PostJSON(context.Background(), "/p", "same-id", map[string]int{"a": 1}, nil); err != nil {
		t.Fatal(err)
	}
	reqs := srv.Requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want 3", len(reqs))
	}
	for _, r := range reqs {
		if r.RequestID != "same-id" || !r.SignatureOK || string(r.Body) != `{"a":1}` {
			t.Errorf("retry %+v", r)
		}
	}
}

func TestPartnerRefusesBadAnswers(t *testing.T) {
	t.Parallel()
	pki := partnertest.NewPKI(t)
	other, err := gm.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		reply partnertest.Reply
		want  error
		final bool
	}{
		{"fail/bad-signature", partnertest.Reply{Body: map[string]string{"status": "accepted"}, BadSignature: true}, partner.ErrBadSignature, false},
		{"fail/unsigned", partnertest.Reply{Body: map[string]string{"status": "accepted"}, Unsigned: true}, partner.ErrBadSignature, false},
		{"fail/other-key", partnertest.Reply{Body: map[string]string{"status": "accepted"}, SignWith: other}, partner.ErrBadSignature, false},
		{"fail/unsigned-404", partnertest.Reply{Status: 404, Body: map[string]string{"code": "NOT_FOUND"}, Unsigned: true}, partner.ErrBadSignature, false},
		{"final/404", partnertest.Reply{Status: 404, Body: map[string]string{"code": "NOT_FOUND", "message": "no form"}}, nil, true},
		{"retry/409", partnertest.Reply{Status: 409, Body: map[string]string{"code": "CONFLICT"}}, nil, false},
		{"retry/503", partnertest.Reply{Status: 503, Body: map[string]string{"code": "DOWN"}}, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := partnertest.NewServer(t, pki, func(partnertest.Request) partnertest.Reply { return tc.reply })
			err := newClient(t, pki, srv.URL, 0).PostJSON(context.Background(), "/p", "rid", map[string]int{}, nil)
			if err == nil {
				t.Fatal("answer accepted")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if partner.IsFinal(err) != tc.final {
				t.Fatalf("IsFinal(%v) = %v, want %v", err, !tc.final, tc.final)
			}
		})
	}
}

func TestPartnerWrongKeyIsRefusedByPartner(t *testing.T) {
	t.Parallel()
	pki := partnertest.NewPKI(t)
	srv := partnertest.NewServer(t, pki, func(partnertest.Request) partnertest.Reply {
		return partnertest.Reply{Body: map[string]string{"status": "accepted"}}
	})
	other, _ := gm.GenerateKey(rand.Reader)
	c, _ := partner.New(partner.Config{BaseURL: srv.URL, Signer: other, PartnerKey: pki.PartnerSign.Cert.PublicKey()})
	var pe *partner.Error
	err := c.PostJSON(context.Background(), "/p", "rid", map[string]int{}, nil)
	if !errors.As(err, &pe) || pe.Status != http.StatusUnauthorized || !pe.Final() {
		t.Fatalf("err = %v, want a final 401", err)
	}
}

func TestStableRequestID(t *testing.T) {
	t.Parallel()
	if got := partner.StableRequestID("ntp", "ORD123"); got != "ntp-ORD123" {
		t.Errorf("got %q", got)
	}
	long := partner.StableRequestID("ntp", "x:"+string(make([]byte, 80)))
	if !partner.ValidRequestID(long) || long != partner.StableRequestID("ntp", "x:"+string(make([]byte, 80))) {
		t.Errorf("long key gives %q", long)
	}
}

func TestEncryptNameOpensWithPartnerKey(t *testing.T) {
	t.Parallel()
	pki := partnertest.NewPKI(t)
	enc, err := partner.EncryptName(pki.PartnerEnc.Cert.PublicKey(), nil, "张三")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := pki.DecryptName(enc); err != nil || got != "张三" {
		t.Fatalf("decrypt = %q, %v", got, err)
	}
}
