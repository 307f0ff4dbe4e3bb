// Package coretest assembles the core's services over a test database for the tests of the
// domain packages: a development PKI, one partner server playing the non-tax system, the
// e-receipt platform and the window platform (good signed answers by default, replaceable per
// path), the bill, payment and receipt services, the task runner and the inbox consumer, all on
// an injected clock. Only tests import it.
package coretest

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"finepay/ferry/inbox"
	"finepay/ferry/outbox"
	"finepay/ferry/sqldb"
	"finepay/ferry/sqldb/sqltest"
	"finepay/intranet-core/internal/bill"
	"finepay/intranet-core/internal/coredb"
	"finepay/intranet-core/internal/ereceipt"
	"finepay/intranet-core/internal/nontax"
	"finepay/intranet-core/internal/partner"
	"finepay/intranet-core/internal/partner/partnertest"
	"finepay/intranet-core/internal/payment"
	"finepay/intranet-core/internal/pii"
	"finepay/intranet-core/internal/receipt"
	"finepay/intranet-core/internal/task"
	"finepay/intranet-core/internal/window"
	"finepay/shared/bizdate"
	"finepay/shared/envelope"
	"finepay/shared/gm"
	"finepay/shared/logging"
)

// GatewayURL is the cashier base the test services use.
const GatewayURL = "https://pay.example.test"

// Clock is a settable clock.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

// Advance moves the clock on.
func (c *Clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// Start is the test clock's start: 2026-11-27 10:00 in Asia/Shanghai.
var Start = time.Date(2026, 11, 27, 2, 0, 0, 0, time.UTC)

// Env is the core assembled for a test.
type Env struct {
	DB       *sqldb.DB
	PKI      *partnertest.PKI
	Partner  *partnertest.Server
	Clock    *Clock
	Vault    *pii.Vault
	Outbox   *outbox.Outbox
	Bills    *bill.Service
	Payments *payment.Service
	Receipts *receipt.Service
	Runner   *task.Runner
	Consumer *inbox.Consumer
	Registry *prometheus.Registry

	mu      sync.Mutex
	replies map[string]func(partnertest.Request) partnertest.Reply
	seq     int64
}

// Options adjust New.
type Options struct {
	PartnerRetries int // quick retries inside one task attempt (0: none, so attempts are countable)
}

// New builds an Env over a migrated db.
func New(t testing.TB, db *sqldb.DB, o Options) *Env {
	t.Helper()
	sqltest.Must(t, coredb.Migrate(context.Background(), db))
	key := make([]byte, pii.KeySize)
	rand.Read(key)
	vault, err := pii.NewVault(key, nil)
	sqltest.Must(t, err)
	e := &Env{DB: db, PKI: partnertest.NewPKI(t), Clock: &Clock{t: Start}, Vault: vault, Outbox: outbox.New(4),
		Registry: prometheus.NewRegistry(), replies: map[string]func(partnertest.Request) partnertest.Reply{}}
	e.Partner = partnertest.NewServer(t, e.PKI, e.answer)
	newClient := func() *partner.Client {
		c, err := partner.New(partner.Config{BaseURL: e.Partner.URL, App: "core", Signer: e.PKI.Core.Key,
			PartnerKey: e.PKI.PartnerSign.Cert.PublicKey(), PartnerApp: "sandbox", Retries: o.PartnerRetries,
			RetryWaitMin: time.Millisecond, RetryWaitMax: 5 * time.Millisecond})
		sqltest.Must(t, err)
		return c
	}
	log := logging.Discard()
	nt := nontax.New(newClient())
	encKey := e.PKI.PartnerEnc.Cert.PublicKey()
	e.Bills = bill.NewService(bill.Config{DB: db, Vault: vault, Forms: nt, PartnerEncKey: encKey, Outbox: e.Outbox,
		GatewayURL: GatewayURL, Now: e.Clock.Now, Logger: log, Registry: e.Registry})
	handlers := map[string]task.Handler{}
	e.Runner = task.NewRunner(task.Config{DB: db, Handlers: handlers, Now: e.Clock.Now, Jitter: func() float64 { return 0 },
		Logger: log, Registry: e.Registry})
	e.Payments = payment.NewService(payment.Config{DB: db, Vault: vault, PartnerEncKey: encKey, NonTax: nt,
		Window: window.New(newClient()), Now: e.Clock.Now, Logger: log, Registry: e.Registry})
	e.Receipts = receipt.NewService(receipt.Config{Issuer: ereceipt.New(newClient(), e.PKI.PartnerSign.Cert.PublicKey()),
		Outbox: e.Outbox, Now: e.Clock.Now, Logger: log})
	handlers[payment.KindNonTaxReport] = e.Payments.HandleNonTaxReport
	handlers[payment.KindWindowReport] = e.Payments.HandleWindowReport
	handlers[receipt.KindIssue] = e.Receipts.HandleIssue
	e.Consumer = inbox.NewConsumer(inbox.Config{DB: db, Logger: log, Now: e.Clock.Now, Registry: e.Registry,
		Handlers: map[string]inbox.Handler{envelope.TypePaymentConfirmed: e.Payments.HandleConfirmed}})
	return e
}

// SetReply makes the partner answer requests to path (without query) with fn.
func (e *Env) SetReply(path string, fn func(partnertest.Request) partnertest.Reply) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.replies[path] = fn
}

func (e *Env) answer(r partnertest.Request) partnertest.Reply {
	path, _, _ := strings.Cut(r.Path, "?")
	e.mu.Lock()
	fn := e.replies[path]
	e.mu.Unlock()
	if fn != nil {
		return fn(r)
	}
	return e.GoodReply(r)
}

// GoodReply is the partner's normal answer to r.
func (e *Env) GoodReply(r partnertest.Request) partnertest.Reply {
	switch {
	case strings.HasPrefix(r.Path, nontax.PathForms):
		return partnertest.Reply{Body: partnertest.FormAnswer(r.Body)}
	case strings.HasPrefix(r.Path, nontax.PathPayments):
		var in nontax.PaymentReport
		r.JSON(&in)
		return partnertest.Reply{Body: map[string]string{"status": "accepted", "form_no": in.FormNo}}
	case strings.HasPrefix(r.Path, window.PathPaymentResults):
		return partnertest.Reply{Body: map[string]string{"status": "accepted"}}
	case strings.HasPrefix(r.Path, ereceipt.PathReceipts):
		return partnertest.Reply{Body: e.Receipt(r, e.PKI.PartnerSign.Key)}
	}
	return partnertest.Reply{Status: http.StatusNotFound, Body: map[string]string{"code": "NOT_FOUND"}}
}

// Receipt is an e-receipt answer for request r, sealed with key.
func (e *Env) Receipt(r partnertest.Request, key *gm.PrivateKey) ereceipt.Receipt {
	var in ereceipt.Request
	r.JSON(&in)
	rc := ereceipt.Receipt{ReceiptCode: "23010126", ReceiptNo: "0000000001", CheckCode: "a1B2c3",
		IssuedAt: time.Now().In(bizdate.Location).Format(time.RFC3339), Amount: in.Amount, PayerMasked: "张*"}
	rc.Seal = partnertest.Seal(key, rc.ReceiptCode, rc.ReceiptNo, rc.CheckCode, rc.Amount, rc.IssuedAt)
	return rc
}

// ValidRequest is a bill request that passes validation on the test clock's day.
func ValidRequest() bill.CreateRequest {
	return bill.CreateRequest{DecisionNo: "2301021000123456", ViolationSerial: "2301021000000001", PartyName: "张三丰",
		Plate: "黑A12345", Fine: 20000, ServedDate: "2026-11-20", UnitCode: "230100", ItemCode: "103050101"}
}

// CreateBill creates a bill and fails the test on error.
func (e *Env) CreateBill(t testing.TB, req bill.CreateRequest) bill.View {
	t.Helper()
	v, _, err := e.Bills.Create(context.Background(), "test", req)
	sqltest.Must(t, err)
	return v
}

// Confirmation is a payment.confirmed message for a bill paid in full on the test day.
func (e *Env) Confirmation(t testing.TB, v bill.View, orderNo, tradeNo string) envelope.Envelope {
	t.Helper()
	env, err := envelope.New("pay:wechat:"+tradeNo, v.BillNo, e.Clock.Now(), &envelope.PaymentConfirmed{
		BillNo: v.BillNo, OrderNo: orderNo, Channel: "wechat", ChannelTradeNo: tradeNo,
		Amount: int64(v.TotalDueToday), Fine: int64(v.Fine), LateFee: int64(v.LateFee), PaidAt: e.Clock.Now(), NotificationID: "n-" + tradeNo,
	})
	sqltest.Must(t, err)
	return env
}

// Deliver puts env into the inbox as ferryd would (next sequence of lane to-core.0) and lets
// the consumer apply what is ready; it returns how many messages were applied.
func (e *Env) Deliver(t testing.TB, env envelope.Envelope) int {
	t.Helper()
	raw, err := env.Marshal()
	sqltest.Must(t, err)
	e.mu.Lock()
	e.seq++
	seq := e.seq
	e.mu.Unlock()
	_, err = inbox.Receive(context.Background(), e.DB, "gateway", "to-core.0", fmt.Sprintf("bundle-%d", seq),
		[]inbox.Incoming{{Seq: seq, Envelope: env, Raw: raw}}, e.Clock.Now())
	sqltest.Must(t, err)
	n, err := e.Consumer.ConsumeOnce(context.Background())
	sqltest.Must(t, err)
	return n
}

// OutboxMessages returns every queued outbox message of the given type, decoded.
func (e *Env) OutboxMessages(t testing.TB, typ string) []envelope.Envelope {
	t.Helper()
	rows, err := e.DB.Query(`SELECT envelope FROM ferry_outbox WHERE type = $1 ORDER BY lane, seq`, typ)
	sqltest.Must(t, err)
	defer rows.Close()
	var out []envelope.Envelope
	for rows.Next() {
		var raw []byte
		sqltest.Must(t, rows.Scan(&raw))
		env, err := envelope.Unmarshal(raw)
		sqltest.Must(t, err)
		out = append(out, env)
	}
	sqltest.Must(t, rows.Err())
	return out
}

// Tasks returns the tasks of a kind.
func (e *Env) Tasks(t testing.TB, kind string) []task.Row {
	t.Helper()
	rows, err := task.List(context.Background(), e.DB, kind)
	sqltest.Must(t, err)
	return rows
}

// Requests returns the partner requests to path (without query).
func (e *Env) Requests(path string) []partnertest.Request {
	var out []partnertest.Request
	for _, r := range e.Partner.Requests() {
		if p, _, _ := strings.Cut(r.Path, "?"); p == path {
			out = append(out, r)
		}
	}
	return out
}
