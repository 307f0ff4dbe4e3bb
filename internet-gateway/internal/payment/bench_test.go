package payment_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"finepay/ferry/outbox"
	"finepay/ferry/sqldb"
	"finepay/ferry/sqldb/sqltest"
	"finepay/internet-gateway/internal/fixture"
	"finepay/internet-gateway/internal/payment"
	"finepay/internet-gateway/internal/store"
	"finepay/internet-gateway/internal/wechat/wechattest"
	"finepay/shared/httpx"
	"finepay/shared/logging"
)

// benchWorkers is the number of concurrent callers (and database connections) of both
// callback benchmarks.
const benchWorkers = 32

// runWorkers runs do(i) for i in [0, n) on benchWorkers goroutines and returns the elapsed
// time; the first error stops the benchmark.
func runWorkers(b *testing.B, n int, do func(i int) error) time.Duration {
	b.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	start := time.Now()
	for range benchWorkers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := do(i); err != nil {
					once.Do(func() { first = err })
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if first != nil {
		b.Fatal(first)
	}
	return elapsed
}

// BenchmarkCallbackWeChatNotify measures verified WeChat Pay v3 payment notifications per
// second through the gateway's real notification endpoint (POST /notify/wechat on the
// gateway's echo stack): each has its platform signature (SHA256withRSA) verified,
// its resource decrypted (AEAD_AES_256_GCM) and checked, the payment recorded with the order
// and the bill marked paid and a PaymentConfirmed put into the ferry outbox in one transaction,
// the verdict recorded, and 204 answered. PostgreSQL, 32 concurrent notifications and
// connections; every notification is a distinct payment of a distinct order. The channel's
// side (building, encrypting and signing the notifications) happens before the clock starts.
// The outbox has the gateway's default 16 lanes, or CALLBACK_LANES.
func BenchmarkCallbackWeChatNotify(b *testing.B) {
	ctx := context.Background()
	db := sqltest.Open(b, sqldb.Postgres)
	db.SetMaxOpenConns(benchWorkers)
	db.SetMaxIdleConns(benchWorkers)
	env := fixture.New(b, db, fixture.Options{})
	now := env.Clock.Now()
	type note struct {
		header http.Header
		body   []byte
	}
	reqs := make([]note, b.N)
	// The bills and their open WeChat orders (¥200.00 fine, ¥78.00 late fee), in one transaction.
	err := db.Tx(ctx, func(tx *sql.Tx) error {
		for i := range b.N {
			billNo, orderNo := fmt.Sprintf("BB%08d", i), fmt.Sprintf("FPB%08d", i)
			if _, err := env.Store.BillUpsert(ctx, tx, store.Bill{BillNo: billNo, Token: fixture.Token(), DecisionNo: "2301021234567890",
				PartyMasked: "张*明", PlateMasked: "黑A****5", Fine: 20000, ServedDate: "2025-02-01", LateFeeApplies: true,
				UnitName: "哈尔滨市公安局交通警察支队", ItemName: "交通违法罚款", FormNo: "F" + billNo, PayCode: "P" + billNo,
				IssuedAt: now, UpdatedAt: now}); err != nil {
				return err
			}
			if err := env.Store.OrderInsert(ctx, tx, store.Order{OrderNo: orderNo, BillNo: billNo, Channel: "wechat",
				Amount: 27800, Fine: 20000, LateFee: 7800, CodeURL: "weixin://wxpay/bizpayurl/up?pr=" + orderNo, Status: store.OrderCreated,
				ExpiresAt: now.Add(12 * time.Hour), CreatedAt: now, UpdatedAt: now}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	// Statistics as a table in service has them.
	if _, err := db.ExecContext(ctx, `ANALYZE`); err != nil {
		b.Fatal(err)
	}
	for i := range b.N {
		orderNo := fmt.Sprintf("FPB%08d", i)
		body := env.PKI.NotificationBody(fmt.Sprintf("EV-%08d", i), wechattest.Paid{OutTradeNo: orderNo,
			TransactionID: fmt.Sprintf("4200%024d", i), Total: 27800, SuccessTime: now})
		reqs[i] = note{header: env.PKI.Sign(now, body), body: body}
	}
	// The gateway's ferry outbox lanes: CALLBACK_LANES, or the gateway's default -lanes 16.
	lanes := 16
	if v := os.Getenv("CALLBACK_LANES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 64 {
			b.Fatalf("CALLBACK_LANES=%q: want 1 to 64", v)
		}
		lanes = n
	}
	recorder := payment.NewRecorder(payment.RecorderConfig{Store: env.Store, Outbox: outbox.New(lanes), Bills: env.Bills,
		Now: env.Clock.Now, Logger: logging.Discard()})
	notes := payment.NewNotifications(payment.NotificationsConfig{Store: env.Store, Recorder: recorder, WeChat: env.Client,
		Now: env.Clock.Now, Logger: logging.Discard()})
	e, _ := httpx.New(httpx.Options{Service: "bench", Logger: logging.Discard()})
	e.POST("/notify/wechat", notes.HandleWeChatHTTP)

	b.ResetTimer()
	elapsed := runWorkers(b, b.N, func(i int) error {
		req := httptest.NewRequest(http.MethodPost, "/notify/wechat", bytes.NewReader(reqs[i].body))
		req.Header = reqs[i].header.Clone()
		req.Header.Set("Content-Type", "application/json")
		req.RemoteAddr = "203.0.113.9:443"
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		if rec.Code != http.StatusNoContent {
			return fmt.Errorf("notification %d: %d %s", i, rec.Code, rec.Body)
		}
		return nil
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "notifications/s")
	if got := env.Count(b, `SELECT count(*) FROM payments`); got != b.N {
		b.Fatalf("%d payments recorded, want %d", got, b.N)
	}
	if got := env.Count(b, `SELECT count(*) FROM ferry_outbox`); got != b.N {
		b.Fatalf("%d outbox messages, want %d", got, b.N)
	}
}

// BenchmarkCallbackPGInsert is the yardstick of BenchmarkCallbackWeChatNotify: bare
// single-row INSERTs (autocommit) of a 512-byte row into an indexed table on the same
// PostgreSQL, 32 concurrent callers and connections.
func BenchmarkCallbackPGInsert(b *testing.B) {
	ctx := context.Background()
	db := sqltest.Open(b, sqldb.Postgres)
	db.SetMaxOpenConns(benchWorkers)
	db.SetMaxIdleConns(benchWorkers)
	if _, err := db.ExecContext(ctx, `CREATE TABLE bench_rows (id BIGSERIAL PRIMARY KEY, k TEXT NOT NULL UNIQUE,
		payload BYTEA NOT NULL, created_at TIMESTAMPTZ NOT NULL)`); err != nil {
		b.Fatal(err)
	}
	payload := bytes.Repeat([]byte{'x'}, 512)
	// Open the connections before the clock starts, as the gateway's pool is warm.
	runWorkers(b, benchWorkers, func(int) error { return db.PingContext(ctx) })
	b.ResetTimer()
	elapsed := runWorkers(b, b.N, func(i int) error {
		_, err := db.ExecContext(ctx, `INSERT INTO bench_rows (k, payload, created_at) VALUES ($1, $2, $3)`,
			fmt.Sprintf("k%08d", i), payload, time.Now())
		return err
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "inserts/s")
}
