package receipt

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"testing"
	"time"

	"finepay/ferry/sqldb"
	"finepay/ferry/sqldb/sqltest"
	"finepay/intranet-core/internal/coredb"
	"finepay/intranet-core/internal/ereceipt"
)

// TestE1NumbersTakenConcurrentlyAreDistinctAndInOrder: workers taking numbers at the same time
// get each number of the stock once, none skipped, and move on to the next range when one is
// used up.
func TestE1NumbersTakenConcurrentlyAreDistinctAndInOrder(t *testing.T) {
	sqltest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		sqltest.Must(t, coredb.Migrate(ctx, db))
		now := time.Date(2026, 11, 27, 2, 0, 0, 0, time.UTC)
		for i, r := range [][2]string{{"0000000001", "0000000050"}, {"0000000051", "0000000200"}} {
			a := ereceipt.Allocation{AllocationID: fmt.Sprintf("A%d", i), UnitCode: "230100", ReceiptCode: "23010126",
				StartNo: r[0], EndNo: r[1], HandedAt: now.Add(time.Duration(i) * time.Minute).Format(time.RFC3339)}
			_, err := TakeIn(ctx, db, a, now)
			sqltest.Must(t, err)
			sqltest.Must(t, MarkAccepted(ctx, db, a.AllocationID, now))
		}
		var mu sync.Mutex
		got := map[string]int{}
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for range 10 {
					var no string
					err := db.Tx(ctx, func(tx *sql.Tx) error {
						var err error
						_, _, no, err = take(ctx, tx, "230100")
						return err
					})
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					got[no]++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		for i := 1; i <= 80; i++ {
			if n := got[fmt.Sprintf("%010d", i)]; n != 1 {
				t.Errorf("number %d taken %d times", i, n)
			}
		}
		if len(got) != 80 {
			t.Errorf("%d numbers taken, want 80", len(got))
		}
	})
}
