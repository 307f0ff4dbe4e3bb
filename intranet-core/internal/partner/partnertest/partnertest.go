// Package partnertest gives tests a development PKI made with gm.NewCA and IssueNode, and an
// httptest server that plays a partner: it checks the core's request signatures with its own
// implementation of docs/partners.md (not the partner package's, so that a mistake on one side
// shows), records every request, and signs its answers with the partner's key. Only tests
// import it.
package partnertest

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"finepay/shared/gm"
)

// PKI is a CA with the core's signing key and the partner's signing and encryption keys.
type PKI struct {
	Dir         string // holds ca.pem, core-sign.key/.pem, sandbox-sign.key/.pem, sandbox-enc.key/.pem
	CA          *gm.Issued
	Core        *gm.Issued
	PartnerSign *gm.Issued
	PartnerEnc  *gm.Issued
	// Unit is the e-receipt issuing unit's signing key (unit-sign.key/.pem).
	Unit *gm.Issued
	// CoreEnc is the core's encryption key (core-enc.key/.pem): partners that call the core
	// encrypt personal fields to it.
	CoreEnc *gm.Issued
}

// NewPKI makes a PKI and writes it to a temporary directory, named as fpcerts names it.
func NewPKI(tb testing.TB) *PKI {
	tb.Helper()
	until := time.Now().Add(24 * time.Hour)
	ca, err := gm.NewCA(rand.Reader, "FinePay test CA", until)
	if err != nil {
		tb.Fatal(err)
	}
	issue := func(cn string, u gm.Usage) *gm.Issued {
		i, err := ca.IssueNode(rand.Reader, cn, u, []string{"localhost"}, nil, until)
		if err != nil {
			tb.Fatal(err)
		}
		return i
	}
	p := &PKI{Dir: tb.TempDir(), CA: ca, Core: issue("core", gm.UsageSign),
		PartnerSign: issue("sandbox", gm.UsageSign), PartnerEnc: issue("sandbox", gm.UsageEncrypt), Unit: issue("unit", gm.UsageSign),
		CoreEnc: issue("core", gm.UsageEncrypt)}
	write := func(name string, b []byte) {
		if err := os.WriteFile(filepath.Join(p.Dir, name), b, 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	write("ca.pem", ca.Cert.PEM())
	for name, i := range map[string]*gm.Issued{"core-sign": p.Core, "sandbox-sign": p.PartnerSign, "sandbox-enc": p.PartnerEnc, "unit-sign": p.Unit, "core-enc": p.CoreEnc} {
		k, err := i.Key.MarshalPKCS8PEM()
		if err != nil {
			tb.Fatal(err)
		}
		write(name+".key", k)
		write(name+".pem", i.Cert.PEM())
	}
	return p
}

// DecryptName opens a payer_name_enc value with the partner's encryption key.
func (p *PKI) DecryptName(enc string) (string, error) {
	ct, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		return "", err
	}
	pt, err := p.PartnerEnc.Key.Decrypt(ct)
	return string(pt), err
}

// Seal returns the finance supervision seal of a receipt, signed with key (the partner's
// signing key for a good seal): over code, number, check code, amount, issue time, the SM3 hex
// of the unit's signed data and the unit's signature, one per line (docs/partners.md).
func Seal(key *gm.PrivateKey, code, number, check string, amount int64, issuedAt string, data []byte, unitSignature string) string {
	msg := code + "\n" + number + "\n" + check + "\n" + strconv.FormatInt(amount, 10) + "\n" + issuedAt + "\n" + digest(data) + "\n" + unitSignature
	sig, err := key.Sign(rand.Reader, []byte(msg))
	if err != nil {
		panic(err)
	}
	return base64.StdEncoding.EncodeToString(sig)
}

// Request is a request the partner received.
type Request struct {
	Method      string
	Path        string // path with raw query
	App         string
	RequestID   string
	Timestamp   int64
	Body        []byte
	SignatureOK bool // the core's signature verified and the timestamp was within 300 s
}

// JSON decodes the body into v.
func (r Request) JSON(v any) error { return json.Unmarshal(r.Body, v) }

// Reply is the partner's answer.
type Reply struct {
	Status       int
	Body         any            // encoded as JSON; a []byte is sent as is
	Unsigned     bool           // send no envelope headers
	BadSignature bool           // sign other bytes than the body
	SignWith     *gm.PrivateKey // sign with this key instead of the partner's
}

// Server is a partner.
type Server struct {
	*httptest.Server
	PKI    *PKI
	mu     sync.Mutex
	reqs   []Request
	handle func(Request) Reply
}

// NewServer starts a partner answering with handle; requests whose signature does not verify
// are answered 401 (signed) without calling handle.
func NewServer(tb testing.TB, pki *PKI, handle func(Request) Reply) *Server {
	s := &Server{PKI: pki, handle: handle}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	tb.Cleanup(s.Close)
	return s
}

// SetHandler replaces the answering function.
func (s *Server) SetHandler(h func(Request) Reply) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.handle = h
}

// Requests returns the requests received so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.reqs...)
}

func digest(b []byte) string {
	d := gm.SM3(b)
	return hex.EncodeToString(d[:])
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	req := Request{Method: r.Method, Path: r.URL.RequestURI(), App: r.Header.Get("X-FP-App"),
		RequestID: r.Header.Get("X-FP-Request-Id"), Body: body}
	ts, err := strconv.ParseInt(r.Header.Get("X-FP-Timestamp"), 10, 64)
	sig, err2 := base64.StdEncoding.DecodeString(r.Header.Get("X-FP-Signature"))
	if err == nil && err2 == nil && req.App != "" && req.RequestID != "" {
		req.Timestamp = ts
		msg := fmt.Sprintf("%s\n%s\n%d\n%s\n%s\n%s", req.App, req.RequestID, ts, req.Method, req.Path, digest(body))
		skew := time.Since(time.Unix(ts, 0))
		req.SignatureOK = s.PKI.Core.Cert.PublicKey().Verify([]byte(msg), sig) == nil && skew < 300*time.Second && skew > -300*time.Second
	}
	s.mu.Lock()
	s.reqs = append(s.reqs, req)
	h := s.handle
	s.mu.Unlock()
	reply := Reply{Status: http.StatusUnauthorized, Body: map[string]string{"code": "BAD_SIGNATURE", "message": "signature does not verify"}}
	if req.SignatureOK {
		reply = h(req)
	}
	s.write(w, req.RequestID, reply)
}

func (s *Server) write(w http.ResponseWriter, rid string, rp Reply) {
	if rp.Status == 0 {
		rp.Status = http.StatusOK
	}
	var out []byte
	switch b := rp.Body.(type) {
	case []byte:
		out = b
	case nil:
	default:
		out, _ = json.Marshal(b)
	}
	if !rp.Unsigned {
		ts := time.Now().Unix()
		signed := out
		if rp.BadSignature {
			signed = append([]byte("x"), out...)
		}
		key := s.PKI.PartnerSign.Key
		if rp.SignWith != nil {
			key = rp.SignWith
		}
		msg := fmt.Sprintf("%s\n%s\n%d\n%d\n\n%s", "sandbox", rid, ts, rp.Status, digest(signed))
		sig, err := key.Sign(rand.Reader, []byte(msg))
		if err != nil {
			panic(err)
		}
		h := w.Header()
		h.Set("X-FP-App", "sandbox")
		h.Set("X-FP-Request-Id", rid)
		h.Set("X-FP-Timestamp", strconv.FormatInt(ts, 10))
		h.Set("X-FP-Signature", base64.StdEncoding.EncodeToString(sig))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(rp.Status)
	w.Write(out)
}

// FormAnswer is a typical non-tax answer to POST /nontax/v1/forms for a request body.
func FormAnswer(body []byte) map[string]any {
	var in struct {
		DecisionNo string `json:"decision_no"`
		Fine       int64  `json:"fine"`
	}
	json.Unmarshal(body, &in)
	no := "2301" + in.DecisionNo
	for len(no) < 20 {
		no += "0"
	}
	no = no[:20]
	return map[string]any{"form_no": no, "pay_code": no, "unit_name": "哈尔滨市公安局交通警察支队", "item_name": "交通违法罚没收入",
		"fine": in.Fine, "due_date": "2026-12-05", "issued_at": time.Now().Format(time.RFC3339)}
}
