package receipt_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"testing"
	"time"

	"finepay/ferry/sqldb"
	"finepay/ferry/sqldb/sqltest"
	"finepay/intranet-core/internal/bill"
	"finepay/intranet-core/internal/coretest"
	"finepay/intranet-core/internal/ereceipt"
	"finepay/intranet-core/internal/partner/partnertest"
	"finepay/intranet-core/internal/receipt"
	"finepay/intranet-core/internal/task"
	"finepay/shared/envelope"
	"finepay/shared/gm"
)

// paid returns an env with a paid bill whose three tasks (two reports, the receipt) are queued.
func paid(t *testing.T, db *sqldb.DB) (*coretest.Env, bill.View) {
	t.Helper()
	env := coretest.New(t, db, coretest.Options{})
	v := env.CreateBill(t, coretest.ValidRequest())
	env.Deliver(t, env.Confirmation(t, v, "ORD001", "WX001"))
	return env, v
}

func receiptTask(t *testing.T, env *coretest.Env) task.Row {
	t.Helper()
	rows := env.Tasks(t, receipt.KindIssue)
	if len(rows) != 1 {
		t.Fatalf("%d receipt tasks", len(rows))
	}
	return rows[0]
}

func storedReceipts(t *testing.T, env *coretest.Env) int {
	t.Helper()
	var n int
	sqltest.Must(t, env.DB.QueryRow(`SELECT count(*) FROM receipts`).Scan(&n))
	return n
}

func TestE1ReceiptTaskRetriesUntilDoneWithOneRequestID(t *testing.T) {
	sqltest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		env, v := paid(t, db)
		calls := 0
		env.SetReply(ereceipt.PathReceipts, func(r partnertest.Request) partnertest.Reply {
			calls++
			if calls <= 2 {
				return partnertest.Reply{Status: http.StatusInternalServerError, Body: map[string]string{"code": "BUSY"}}
			}
			return env.GoodReply(r)
		})
		for attempt := 1; attempt <= 3; attempt++ {
			env.Runner.RunDue(ctx)
			rt := receiptTask(t, env)
			if rt.Attempts != attempt {
				t.Fatalf("after round %d: %d attempts", attempt, rt.Attempts)
			}
			if attempt < 3 {
				if rt.Status != task.StatusPending || storedReceipts(t, env) != 0 {
					t.Fatalf("round %d: task %s, %d receipts", attempt, rt.Status, storedReceipts(t, env))
				}
				env.Clock.Advance(10 * time.Minute)
			}
		}
		if rt := receiptTask(t, env); rt.Status != task.StatusDone {
			t.Fatalf("task %+v", rt)
		}
		reqs := env.Requests(ereceipt.PathReceipts)
		if len(reqs) != 3 {
			t.Fatalf("%d receipt requests, want 3", len(reqs))
		}
		for _, r := range reqs {
			if r.RequestID != "rcp-"+v.BillNo || string(r.Body) != string(reqs[0].Body) || !r.SignatureOK {
				t.Fatalf("attempt with request id %q, signature %v, same body %v", r.RequestID, r.SignatureOK, string(r.Body) == string(reqs[0].Body))
			}
		}
		if storedReceipts(t, env) != 1 {
			t.Fatal("receipt not stored")
		}
		msgs := env.OutboxMessages(t, envelope.TypeReceiptIssued)
		if len(msgs) != 1 || msgs[0].ID != "rcpt:"+v.BillNo || msgs[0].Key != v.BillNo {
			t.Fatalf("outbox %+v", msgs)
		}
		p, err := msgs[0].Decode()
		sqltest.Must(t, err)
		ri := p.(*envelope.ReceiptIssued)
		if ri.ReceiptCode != "23010126" || ri.ReceiptNo != "0000000001" || ri.Amount != 20000 || ri.OrderNo != "ORD001" || ri.PayerMasked != "张*" {
			t.Fatalf("ReceiptIssued %+v", ri)
		}
		view, err := env.Bills.Get(ctx, v.BillNo)
		sqltest.Must(t, err)
		if view.Receipt == nil || view.Receipt.ReceiptNo != "0000000001" {
			t.Fatalf("bill view receipt %+v", view.Receipt)
		}
	})
}

func TestE1ReceiptWithBadSignatureOrSealIsNotAccepted(t *testing.T) {
	other, err := gm.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		reply func(env *coretest.Env, r partnertest.Request) partnertest.Reply
	}{
		{"fail/bad-signature", func(env *coretest.Env, r partnertest.Request) partnertest.Reply {
			rp := env.GoodReply(r)
			rp.BadSignature = true
			return rp
		}},
		{"fail/unsigned", func(env *coretest.Env, r partnertest.Request) partnertest.Reply {
			rp := env.GoodReply(r)
			rp.Unsigned = true
			return rp
		}},
		{"fail/signed-by-another-key", func(env *coretest.Env, r partnertest.Request) partnertest.Reply {
			rp := env.GoodReply(r)
			rp.SignWith = other
			return rp
		}},
		{"fail/seal-by-another-key", func(env *coretest.Env, r partnertest.Request) partnertest.Reply {
			return partnertest.Reply{Body: env.Receipt(r, other)}
		}},
		{"fail/seal-over-other-amount", func(env *coretest.Env, r partnertest.Request) partnertest.Reply {
			rc := env.Receipt(r, env.PKI.PartnerSign.Key)
			rc.Amount++
			data, _ := base64.StdEncoding.DecodeString(rc.Data)
			rc.Seal = partnertest.Seal(env.PKI.PartnerSign.Key, rc.ReceiptCode, rc.ReceiptNo, rc.CheckCode, rc.Amount, rc.IssuedAt, data, rc.UnitSignature)
			return partnertest.Reply{Body: rc}
		}},
		{"fail/seal-tampered-number", func(env *coretest.Env, r partnertest.Request) partnertest.Reply {
			rc := env.Receipt(r, env.PKI.PartnerSign.Key)
			rc.ReceiptNo = "0000000002"
			return partnertest.Reply{Body: rc}
		}},
		{"fail/seal-over-other-data", func(env *coretest.Env, r partnertest.Request) partnertest.Reply {
			rc := env.Receipt(r, env.PKI.PartnerSign.Key)
			rc.Seal = partnertest.Seal(env.PKI.PartnerSign.Key, rc.ReceiptCode, rc.ReceiptNo, rc.CheckCode, rc.Amount, rc.IssuedAt, []byte("{}"), rc.UnitSignature)
			return partnertest.Reply{Body: rc}
		}},
		{"fail/not-the-unit-data", func(env *coretest.Env, r partnertest.Request) partnertest.Reply {
			rc := env.Receipt(r, env.PKI.PartnerSign.Key)
			rc.UnitSignature = "MEUCIQ=="
			return partnertest.Reply{Body: rc}
		}},
		{"fail/layout-not-pdf", func(env *coretest.Env, r partnertest.Request) partnertest.Reply {
			rc := env.Receipt(r, env.PKI.PartnerSign.Key)
			rc.Layout = base64.StdEncoding.EncodeToString([]byte("<html>"))
			return partnertest.Reply{Body: rc}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env, _ := paid(t, sqltest.Open(t, sqldb.SQLite))
			env.SetReply(ereceipt.PathReceipts, func(r partnertest.Request) partnertest.Reply { return tc.reply(env, r) })
			env.Runner.RunDue(context.Background())
			rt := receiptTask(t, env)
			if rt.Status != task.StatusPending || rt.Attempts != 1 || rt.LastError == "" {
				t.Fatalf("task %+v", rt)
			}
			if storedReceipts(t, env) != 0 || len(env.OutboxMessages(t, envelope.TypeReceiptIssued)) != 0 {
				t.Fatal("a bad answer was accepted")
			}
			// Once the platform answers properly, the retry succeeds.
			env.SetReply(ereceipt.PathReceipts, nil)
			env.Clock.Advance(10 * time.Minute)
			env.Runner.RunDue(context.Background())
			if rt := receiptTask(t, env); rt.Status != task.StatusDone || storedReceipts(t, env) != 1 {
				t.Fatalf("after a good answer: %+v", rt)
			}
		})
	}
}
