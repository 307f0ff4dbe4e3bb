// Package coretest assembles the core's services over a test database for the tests of the
// domain packages: a development PKI, one partner server playing the non-tax system, the
// e-receipt platform and the window platform (good signed answers by default, replaceable per
// path), the bill, payment and receipt services, the task runner and the inbox consumer, all on
// an injected clock. Only tests import it.
package coretest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
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
	"finepay/intranet-core/internal/refund"
	"finepay/intranet-core/internal/refundflow"
	"finepay/intranet-core/internal/task"
	"finepay/intranet-core/internal/window"
	"finepay/shared/bizdate"
	"finepay/shared/envelope"
	"finepay/shared/gm"
	"finepay/shared/logging"
)

// GatewayURL is the cashier base the test services use.
const GatewayURL = "https://pay.example.test"

// LookupKey is the lookup key the Env's bill service publishes lookup hashes under.
var LookupKey = []byte("coretest lookup key, 32 bytes...")

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
	Refunds  *refund.Service
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
		GatewayURL: GatewayURL, LookupKey: LookupKey, Now: e.Clock.Now, Logger: log, Registry: e.Registry})
	handlers := map[string]task.Handler{}
	e.Runner = task.NewRunner(task.Config{DB: db, Handlers: handlers, Now: e.Clock.Now, Jitter: func() float64 { return 0 },
		Logger: log, Registry: e.Registry})
	gw := refund.GatewayInstructor{Outbox: e.Outbox, Now: e.Clock.Now}
	ntc := newClient()
	e.Refunds = refund.NewService(refund.Config{DB: db, Applier: ereceipt.New(newClient(), nil), Reviewer: nt,
		Instructors: map[string]refund.Instructor{"wechat": gw, "alipay": gw, "unionpay": gw},
		NonTax:      nontax.NewReporter(ntc, nontax.PathRefundResults),
		Route: map[refund.Route]refund.Reporter{refund.R1: nontax.NewReporter(ntc, PathISPRefundResults),
			refund.R5: nontax.NewReporter(ntc, PathUnifiedRefundResults)},
		Facts: refundflow.Facts, OnRefunded: refundflow.RedFlushOnRefund(e.Clock.Now), Now: e.Clock.Now, Logger: log})
	e.Payments = payment.NewService(payment.Config{DB: db, Vault: vault, PartnerEncKey: encKey, NonTax: nt,
		Window: window.New(newClient()), OnDuplicate: refundflow.StartR5(e.Refunds, log), Now: e.Clock.Now, Logger: log, Registry: e.Registry})
	e.Receipts = receipt.NewService(receipt.Config{DB: db, Platform: ereceipt.New(newClient(), e.PKI.PartnerSign.Cert.PublicKey()),
		UnitKey: e.PKI.Unit.Key, Outbox: e.Outbox, Now: e.Clock.Now, Logger: log})
	e.seedStock(t)
	handlers[payment.KindNonTaxReport] = e.Payments.HandleNonTaxReport
	handlers[payment.KindWindowReport] = e.Payments.HandleWindowReport
	for kind, h := range e.Receipts.Handlers() {
		handlers[kind] = h
	}
	for kind, h := range e.Refunds.Handlers() {
		handlers[kind] = h
	}
	e.Consumer = inbox.NewConsumer(inbox.Config{DB: db, Logger: log, Now: e.Clock.Now, Registry: e.Registry,
		Handlers: map[string]inbox.Handler{envelope.TypePaymentConfirmed: e.Payments.HandleConfirmed,
			envelope.TypeRefundResult: e.Refunds.HandleResult}})
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
	case strings.HasPrefix(r.Path, ereceipt.PathRedReceipts):
		return partnertest.Reply{Body: e.RedReceipt(r, e.PKI.PartnerSign.Key)}
	case strings.HasPrefix(r.Path, ereceipt.PathAllocations):
		return partnertest.Reply{Body: map[string]any{"allocations": []ereceipt.Allocation{}}}
	case strings.HasPrefix(r.Path, ereceipt.PathAcceptances):
		var a ereceipt.Allocation
		r.JSON(&a)
		a.Status = "in_stock"
		return partnertest.Reply{Body: a}
	case strings.HasPrefix(r.Path, ereceipt.PathWriteOffs):
		var w ereceipt.WriteOffReport
		r.JSON(&w)
		return partnertest.Reply{Body: map[string]any{"period": w.Period, "status": "written-off", "discrepancies": []any{}}}
	case strings.HasPrefix(r.Path, ereceipt.PathRefundApplications):
		var a refund.Application
		r.JSON(&a)
		return partnertest.Reply{Body: map[string]string{"status": "accepted", "refund_no": a.RefundNo}}
	case strings.HasPrefix(r.Path, nontax.PathRefundReviews):
		no, _, _ := strings.Cut(strings.TrimPrefix(r.Path, nontax.PathRefundReviews), "?")
		return partnertest.Reply{Body: map[string]string{"refund_no": no, "status": refund.ReviewApproved, "note": "approved"}}
	case strings.HasPrefix(r.Path, nontax.PathRefundResults), strings.HasPrefix(r.Path, PathISPRefundResults),
		strings.HasPrefix(r.Path, PathUnifiedRefundResults):
		return partnertest.Reply{Body: map[string]string{"status": "accepted"}}
	case strings.HasPrefix(r.Path, ereceipt.PathMasterData):
		return partnertest.Reply{Body: map[string]any{"version": "v1",
			"units": []map[string]string{{"unit_code": "230100", "unit_name": "哈尔滨市公安局交通警察支队", "region_code": "230100"}},
			"items": []map[string]string{{"item_code": "103050101", "item_name": "公安交通违法罚没收入"}, {"item_code": "103050102", "item_name": "公安交通违法加处罚款收入"}}}}
	}
	return partnertest.Reply{Status: http.StatusNotFound, Body: map[string]string{"code": "NOT_FOUND"}}
}

// Paths where the test partner takes refund outcomes of R1 and R5 (the core's own paths are in
// cmd/core).
const (
	PathISPRefundResults     = "/isp/v1/refund-results"
	PathUnifiedRefundResults = "/unified/v1/refund-results"
)

// Layout is the layout file of the test receipts.
var Layout = []byte("%PDF-1.4\n% coretest\n%%EOF\n")

// StockUnits are the units whose stock New takes in, each a range of 100000 numbers of its
// region's code for 2026 (230100 from 0000000001).
var StockUnits = []string{"230100", "230102", "230000", "230200", "230600"}

// seedStock takes a range for each of StockUnits into stock, accepted.
func (e *Env) seedStock(t testing.TB) {
	t.Helper()
	next := map[string]int64{}
	for _, u := range StockUnits {
		code := u[:4] + "0126"
		start := next[code] + 1
		next[code] = start + 99999
		a := ereceipt.Allocation{AllocationID: "seed-" + u, UnitCode: u, ReceiptCode: code, StartNo: fmt.Sprintf("%010d", start),
			EndNo: fmt.Sprintf("%010d", next[code]), HandedAt: Start.Format(time.RFC3339)}
		_, err := receipt.TakeIn(context.Background(), e.DB, a, Start)
		sqltest.Must(t, err)
		sqltest.Must(t, receipt.MarkAccepted(context.Background(), e.DB, a.AllocationID, Start))
	}
}

// Receipt is the platform's e-receipt answer to issue request r, sealed with key: the number
// and signed data asked for, check code a1B2c3, the payer 张*.
func (e *Env) Receipt(r partnertest.Request, key *gm.PrivateKey) ereceipt.Receipt {
	var in ereceipt.Request
	r.JSON(&in)
	rc := ereceipt.Receipt{Kind: ereceipt.KindBlue, ReceiptCode: in.ReceiptCode, ReceiptNo: in.ReceiptNo, CheckCode: "a1B2c3",
		IssuedAt: e.Clock.Now().In(bizdate.Location).Format(time.RFC3339), Amount: in.Amount, PayerMasked: "张*",
		Data: in.Data, UnitSignature: in.UnitSignature, Layout: base64.StdEncoding.EncodeToString(Layout)}
	data, _ := base64.StdEncoding.DecodeString(in.Data)
	rc.Seal = partnertest.Seal(key, rc.ReceiptCode, rc.ReceiptNo, rc.CheckCode, rc.Amount, rc.IssuedAt, data, rc.UnitSignature)
	return rc
}

// RedReceipt is the platform's answer to red-flush request r, sealed with key; the amount is
// taken from the signed data.
func (e *Env) RedReceipt(r partnertest.Request, key *gm.PrivateKey) ereceipt.Receipt {
	var in ereceipt.RedRequest
	r.JSON(&in)
	data, _ := base64.StdEncoding.DecodeString(in.Data)
	var d ereceipt.Data
	json.Unmarshal(data, &d)
	rc := ereceipt.Receipt{Kind: ereceipt.KindRed, ReceiptCode: in.ReceiptCode, ReceiptNo: in.ReceiptNo, CheckCode: "r9R8r7",
		IssuedAt: e.Clock.Now().In(bizdate.Location).Format(time.RFC3339), Amount: d.Amount, PayerMasked: "张*",
		OriginalCode: in.OriginalCode, OriginalNo: in.OriginalNo, Data: in.Data, UnitSignature: in.UnitSignature,
		Layout: base64.StdEncoding.EncodeToString(Layout)}
	rc.Seal = partnertest.Seal(key, rc.ReceiptCode, rc.ReceiptNo, rc.CheckCode, rc.Amount, rc.IssuedAt, data, rc.UnitSignature)
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
