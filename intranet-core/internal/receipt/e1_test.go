package receipt_test

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
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
	"finepay/shared/bizdate"
	"finepay/shared/envelope"
)

// payBill creates and pays a bill for decision (with violation serial "V"+decision).
func payBill(t *testing.T, env *coretest.Env, decision, unit, order string) bill.View {
	t.Helper()
	req := coretest.ValidRequest()
	req.DecisionNo, req.ViolationSerial = decision, "V"+decision
	if unit != "" {
		req.UnitCode = unit
	}
	v := env.CreateBill(t, req)
	env.Deliver(t, env.Confirmation(t, v, order, "WX"+order))
	return v
}

func numberState(t *testing.T, env *coretest.Env, code, no string) string {
	t.Helper()
	var st string
	sqltest.Must(t, env.DB.QueryRow(`SELECT state FROM receipt_numbers WHERE receipt_code = $1 AND receipt_no = $2`, code, no).Scan(&st))
	return st
}

// TestE1ReceiptNumbersComeFromStockInOrder: the core takes each receipt's number from the
// unit's stock in order and signs the receipt data with the unit key; the platform's receipt
// carries that number and data, and the ReceiptIssued message carries the signed receipt and
// its layout file for the payer to download. A repeated payment message changes nothing.
func TestE1ReceiptNumbersComeFromStockInOrder(t *testing.T) {
	sqltest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		env := coretest.New(t, db, coretest.Options{})
		a := payBill(t, env, "2301021000123401", "", "ORD001")
		b := payBill(t, env, "2301021000123402", "", "ORD002")
		env.Deliver(t, env.Confirmation(t, a, "ORD001", "WXORD001")) // repeated: no second receipt
		env.Runner.RunDue(ctx)
		msgs := env.OutboxMessages(t, envelope.TypeReceiptIssued)
		if len(msgs) != 2 || len(env.Requests(ereceipt.PathReceipts)) != 2 {
			t.Fatalf("%d messages, %d requests", len(msgs), len(env.Requests(ereceipt.PathReceipts)))
		}
		want := map[string]string{a.BillNo: "0000000001", b.BillNo: "0000000002"}
		for _, m := range msgs {
			p, err := m.Decode()
			sqltest.Must(t, err)
			ri := p.(*envelope.ReceiptIssued)
			if ri.ReceiptCode != "23010126" || ri.ReceiptNo != want[ri.BillNo] {
				t.Errorf("bill %s got %s %s, want %s", ri.BillNo, ri.ReceiptCode, ri.ReceiptNo, want[ri.BillNo])
			}
			sig, _ := base64.StdEncoding.DecodeString(ri.UnitSignature)
			if err := env.PKI.Unit.Cert.PublicKey().Verify(ri.Data, sig); err != nil {
				t.Errorf("unit signature over the data: %v", err)
			}
			var d ereceipt.Data
			sqltest.Must(t, json.Unmarshal(ri.Data, &d))
			if d.Kind != "blue" || d.ReceiptNo != ri.ReceiptNo || (d.Payer == "" || strings.Contains(d.Payer, "三丰")) || d.UnitCode != "230100" || d.Amount != ri.Amount ||
				len(d.Items) == 0 || d.Items[0].ItemCode != "103050101" || d.UnitName == "" {
				t.Errorf("signed data %+v", d)
			}
			var sum int64
			for _, it := range d.Items {
				sum += it.Amount
			}
			if sum != d.Amount || string(ri.Layout) != string(coretest.Layout) || ri.Seal == "" {
				t.Errorf("items add up to %d of %d; layout %q", sum, d.Amount, ri.Layout)
			}
			if numberState(t, env, ri.ReceiptCode, ri.ReceiptNo) != receipt.NumberIssued {
				t.Errorf("number %s not marked issued", ri.ReceiptNo)
			}
		}
		left, err := receipt.StockLeft(ctx, db)
		sqltest.Must(t, err)
		if left[0].UnitCode != "230000" || left[1].UnitCode != "230100" || left[1].Left != 99998 {
			t.Errorf("stock left %+v", left)
		}
	})
}

// TestE1ReceiptWaitsForStock: a unit without stock gets no receipt until finance hands a range
// down; the receipt task asks for a stock pull, which takes the range into stock and confirms
// it to the platform; the next attempt issues the receipt from it.
func TestE1ReceiptWaitsForStock(t *testing.T) {
	sqltest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		env := coretest.New(t, db, coretest.Options{})
		v := payBill(t, env, "2301021000123403", "231000", "ORD003")
		env.Runner.RunDue(ctx)
		rt := receiptTask(t, env)
		if rt.Status != task.StatusPending || !strings.Contains(rt.LastError, "no receipt numbers in stock") {
			t.Fatalf("task %+v", rt)
		}
		if pulls := env.Tasks(t, receipt.KindStock); len(pulls) != 1 || pulls[0].Status != task.StatusDone {
			t.Fatalf("stock pulls %+v", pulls)
		}
		env.SetReply(ereceipt.PathAllocations, func(r partnertest.Request) partnertest.Reply {
			return partnertest.Reply{Body: map[string]any{"allocations": []ereceipt.Allocation{{AllocationID: "A231001260000000501",
				UnitCode: "231000", ReceiptCode: "23100126", StartNo: "0000000501", EndNo: "0000000600",
				HandedAt: coretest.Start.Format(time.RFC3339), Status: "handed"}}}}
		})
		sqltest.Must(t, env.DB.Tx(ctx, func(tx *sql.Tx) error {
			_, err := task.Enqueue(ctx, tx, env.Clock.Now(), task.Spec{Kind: receipt.KindStock, Key: "manual", RequestID: "stk-manual"})
			return err
		}))
		env.Runner.RunDue(ctx)
		acc := env.Requests(ereceipt.PathAcceptances)
		if len(acc) != 1 || !strings.Contains(string(acc[0].Body), `"allocation_id":"A231001260000000501"`) {
			t.Fatalf("acceptances %+v", acc)
		}
		env.Clock.Advance(10 * time.Minute)
		env.Runner.RunDue(ctx)
		if rt := receiptTask(t, env); rt.Status != task.StatusDone {
			t.Fatalf("task after the stock came %+v", rt)
		}
		view, err := env.Bills.Get(ctx, v.BillNo)
		sqltest.Must(t, err)
		if view.Receipt == nil || view.Receipt.ReceiptCode != "23100126" || view.Receipt.ReceiptNo != "0000000501" {
			t.Fatalf("receipt %+v", view.Receipt)
		}
		// The same range again changes nothing.
		added, err := receipt.TakeIn(ctx, db, ereceipt.Allocation{AllocationID: "A231001260000000501", UnitCode: "231000",
			ReceiptCode: "23100126", StartNo: "0000000501", EndNo: "0000000600", HandedAt: coretest.Start.Format(time.RFC3339)}, env.Clock.Now())
		if err != nil || added {
			t.Fatalf("second take-in: %v %v", added, err)
		}
	})
}

// TestE1RefusedNumberIsVoided: a final refusal of the platform makes the task dead and voids the
// number, which the day's write-off reports as void.
func TestE1RefusedNumberIsVoided(t *testing.T) {
	ctx := context.Background()
	env := coretest.New(t, sqltest.Open(t, sqldb.Postgres), coretest.Options{})
	payBill(t, env, "2301021000123404", "", "ORD004")
	env.SetReply(ereceipt.PathReceipts, func(r partnertest.Request) partnertest.Reply {
		return partnertest.Reply{Status: http.StatusBadRequest, Body: map[string]string{"code": "INVALID_ARGUMENT", "message": "receipt_no"}}
	})
	env.Runner.RunDue(ctx)
	if rt := receiptTask(t, env); rt.Status != task.StatusDead {
		t.Fatalf("task %+v", rt)
	}
	if st := numberState(t, env, "23010126", "0000000001"); st != receipt.NumberVoid {
		t.Fatalf("number state %s", st)
	}
	u, err := receipt.Usage(ctx, env.DB, bizdate.Of(env.Clock.Now()))
	sqltest.Must(t, err)
	if len(u.Usage) != 1 || u.Usage[0].Void != 1 || u.Usage[0].Issued != 0 || u.Usage[0].FirstNo != "0000000001" {
		t.Fatalf("usage %+v", u)
	}
}

// TestE1RedFlush: the receipt of a bill is red-flushed with a red receipt of its own number from
// stock, signed data referring to the original; the original is kept and marked; a repeated
// red-flush answers the same red receipt without asking the platform again; a bill without a
// receipt has nothing to red-flush; the ereceipt.red task does the same for the refund engine.
func TestE1RedFlush(t *testing.T) {
	sqltest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		env := coretest.New(t, db, coretest.Options{})
		v := payBill(t, env, "2301021000123405", "", "ORD005")
		if _, err := env.Receipts.RedFlush(ctx, v.BillNo, "退付"); !errors.Is(err, receipt.ErrNoReceipt) {
			t.Fatalf("red-flush before the receipt: %v", err)
		}
		env.Runner.RunDue(ctx)
		red, err := env.Receipts.RedFlush(ctx, v.BillNo, "退付")
		sqltest.Must(t, err)
		if red.OriginalCode != "23010126" || red.OriginalNo != "0000000001" || red.ReceiptCode != "23010126" || red.ReceiptNo != "0000000002" ||
			red.CheckCode != "r9R8r7" || red.Amount != int64(v.TotalDueToday) || red.Reason != "退付" || len(red.Layout) == 0 {
			t.Fatalf("red receipt %+v", red)
		}
		var d ereceipt.Data
		sqltest.Must(t, json.Unmarshal(red.Data, &d))
		sig, _ := base64.StdEncoding.DecodeString(red.UnitSignature)
		if err := env.PKI.Unit.Cert.PublicKey().Verify(red.Data, sig); err != nil || d.Kind != "red" || d.OriginalNo != "0000000001" || d.ReceiptNo != "0000000002" {
			t.Fatalf("red data %+v: %v", d, err)
		}
		again, err := env.Receipts.RedFlush(ctx, v.BillNo, "another reason")
		sqltest.Must(t, err)
		if again.ReceiptNo != red.ReceiptNo || again.CheckCode != red.CheckCode || len(env.Requests(ereceipt.PathRedReceipts)) != 1 {
			t.Fatalf("repeated red-flush %+v, %d requests", again, len(env.Requests(ereceipt.PathRedReceipts)))
		}
		var n, flushed int
		sqltest.Must(t, env.DB.QueryRow(`SELECT count(*), count(red_flushed_at) FROM receipts WHERE bill_no = $1`, v.BillNo).Scan(&n, &flushed))
		if n != 1 || flushed != 1 {
			t.Fatalf("original: %d rows, %d red-flushed", n, flushed)
		}
		if numberState(t, env, "23010126", "0000000002") != receipt.NumberIssued {
			t.Error("red number not marked issued")
		}

		// Through the task, as the refund engine will: the platform's first answer is lost,
		// the retry is the same request and gets the same red receipt.
		w := payBill(t, env, "2301021000123406", "", "ORD006")
		env.Runner.RunDue(ctx)
		calls := 0
		env.SetReply(ereceipt.PathRedReceipts, func(r partnertest.Request) partnertest.Reply {
			calls++
			if calls == 1 {
				return partnertest.Reply{Status: http.StatusBadGateway, Body: map[string]string{"code": "BUSY"}}
			}
			return env.GoodReply(r)
		})
		sqltest.Must(t, env.DB.Tx(ctx, func(tx *sql.Tx) error {
			_, err := receipt.EnqueueRedFlush(ctx, tx, env.Clock.Now(), w.BillNo, "重复缴款退付")
			return err
		}))
		env.Runner.RunDue(ctx)
		env.Clock.Advance(10 * time.Minute)
		env.Runner.RunDue(ctx)
		rows := env.Tasks(t, receipt.KindRedFlush)
		if len(rows) != 1 || rows[0].Status != task.StatusDone || rows[0].Attempts != 2 {
			t.Fatalf("red task %+v", rows)
		}
		reqs := env.Requests(ereceipt.PathRedReceipts)[1:]
		if len(reqs) != 2 || string(reqs[0].Body) != string(reqs[1].Body) || reqs[0].RequestID != reqs[1].RequestID {
			t.Fatalf("the retry was not the same request: %d", len(reqs))
		}
		red2, err := receipt.GetRed(ctx, env.DB, w.BillNo)
		sqltest.Must(t, err)
		if red2.ReceiptNo != "0000000004" || red2.OriginalNo != "0000000003" {
			t.Fatalf("red receipt of the second bill %+v", red2)
		}
	})
}

// TestE1ScheduleWriteOffAndMasterData: the scheduler queues the hourly stock pull, the daily
// master data and, two hours into a day, the previous day's write-off, each once however
// often it ticks; the master data is stored; the write-off reports the day's receipts (blue and
// red, with amounts), built once and stored with the platform's answer.
func TestE1ScheduleWriteOffAndMasterData(t *testing.T) {
	sqltest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		env := coretest.New(t, db, coretest.Options{})
		sch := &receipt.Scheduler{DB: db, Now: env.Clock.Now}
		for range 3 {
			sqltest.Must(t, sch.Tick(ctx))
		}
		if n := len(env.Tasks(t, "")); n != 3 {
			t.Fatalf("%d tasks after three ticks, want stock, master data and yesterday's write-off", n)
		}
		v := payBill(t, env, "2301021000123407", "", "ORD007")
		env.Runner.RunDue(ctx)
		_, err := env.Receipts.RedFlush(ctx, v.BillNo, "退付")
		sqltest.Must(t, err)
		var unitName, itemName string
		sqltest.Must(t, env.DB.QueryRow(`SELECT u.unit_name, i.item_name FROM receipt_units u, receipt_items i
			WHERE u.unit_code = '230100' AND i.item_code = '103050102'`).Scan(&unitName, &itemName))
		if unitName == "" || itemName != "公安交通违法加处罚款收入" {
			t.Fatalf("master data %q %q", unitName, itemName)
		}
		wo := env.Requests(ereceipt.PathWriteOffs)
		if len(wo) != 1 || !strings.Contains(string(wo[0].Body), `"period":"2026-11-26","usage":[]`) {
			t.Fatalf("yesterday's write-off %+v", wo)
		}

		// The next day, after 02:00: today's usage is reported.
		env.Clock.Advance(17 * time.Hour) // 2026-11-28 03:00 in Asia/Shanghai
		sqltest.Must(t, sch.Tick(ctx))
		env.Runner.RunDue(ctx)
		wo = env.Requests(ereceipt.PathWriteOffs)
		if len(wo) != 2 {
			t.Fatalf("%d write-off requests", len(wo))
		}
		var rep ereceipt.WriteOffReport
		sqltest.Must(t, wo[1].JSON(&rep))
		amount := int64(v.TotalDueToday)
		if rep.Period != "2026-11-27" || len(rep.Usage) != 1 || rep.Usage[0] != (ereceipt.Usage{UnitCode: "230100", ReceiptCode: "23010126",
			FirstNo: "0000000001", LastNo: "0000000002", Issued: 1, Red: 1, Amount: amount, RedAmount: amount}) {
			t.Fatalf("report %+v", rep)
		}
		var status, report string
		sqltest.Must(t, env.DB.QueryRow(`SELECT status, report FROM receipt_writeoffs WHERE period = '2026-11-27'`).Scan(&status, &report))
		if status != "written-off" || report != string(wo[1].Body) {
			t.Fatalf("stored write-off %s %s", status, report)
		}
	})
}
