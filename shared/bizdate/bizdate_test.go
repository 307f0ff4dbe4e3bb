package bizdate_test

import (
	"testing"
	"time"

	"finepay/shared/bizdate"
)

func TestOfUsesShanghai(t *testing.T) {
	t.Parallel()
	// 16:30 UTC on the 27th is 00:30 on the 28th in Shanghai.
	got := bizdate.Of(time.Date(2026, 11, 27, 16, 30, 0, 0, time.UTC))
	if got.String() != "2026-11-28" {
		t.Fatalf("got %s", got)
	}
	d, err := bizdate.Parse("2026-12-31")
	if err != nil {
		t.Fatal(err)
	}
	if d.AddDays(1).String() != "2027-01-01" || d.AddDays(-365).String() != "2025-12-31" {
		t.Fatalf("AddDays: %s %s", d.AddDays(1), d.AddDays(-365))
	}
	if d.End().Format(time.DateTime) != "2026-12-31 23:59:59" {
		t.Fatalf("End = %s", d.End())
	}
	if n := d.DaysSince(bizdate.Date{Year: 2026, Month: 12, Day: 1}); n != 30 {
		t.Fatalf("DaysSince = %d", n)
	}
	if _, err := bizdate.Parse("2026-13-01"); err == nil {
		t.Fatal("month 13 accepted")
	}
}
