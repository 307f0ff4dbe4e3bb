package bill_test

import (
	"bytes"
	"testing"

	"finepay/ferry/sqldb"
	"finepay/ferry/sqldb/sqltest"
	"finepay/intranet-core/internal/coretest"
	"finepay/shared/envelope"
	"finepay/shared/lookup"
)

// TestP2LookupHashPublished: the published bill carries the keyed hash of the decision number
// and the plate's last four characters (and neither in clear), so that the gateway can find
// the bill by them without holding the plate.
func TestP2LookupHashPublished(t *testing.T) {
	sqltest.Each(t, func(t *testing.T, db *sqldb.DB) {
		env := coretest.New(t, db, coretest.Options{})
		req := coretest.ValidRequest()
		env.CreateBill(t, req)
		msgs := env.OutboxMessages(t, envelope.TypeBillPublished)
		if len(msgs) != 1 {
			t.Fatalf("outbox %+v", msgs)
		}
		p, err := msgs[0].Decode()
		sqltest.Must(t, err)
		want, err := lookup.Hash(coretest.LookupKey, req.DecisionNo, "2345")
		sqltest.Must(t, err)
		if got := p.(*envelope.BillPublished).LookupHash; got != want {
			t.Fatalf("lookup_hash = %q, want %q", got, want)
		}
		if bytes.Contains(msgs[0].Payload, []byte(req.Plate)) || bytes.Contains(msgs[0].Payload, []byte(`"2345"`)) {
			t.Fatal("the published bill holds the plate or its last four characters")
		}
	})
}
