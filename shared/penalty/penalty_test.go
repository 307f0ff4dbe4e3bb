package penalty_test

import (
	"testing"

	"finepay/shared/bizdate"
	"finepay/shared/money"
	"finepay/shared/penalty"
)

func TestLateFee(t *testing.T) {
	t.Parallel()
	served := bizdate.Date{Year: 2026, Month: 11, Day: 1}
	tests := []struct {
		name    string
		fine    money.Fen
		payDay  bizdate.Date
		applies bool
		want    money.Fen
	}{
		{"same day", 20000, served, true, 0},
		{"day 15 is still in time", 20000, served.AddDays(15), true, 0},
		{"day 16 adds one day", 20000, served.AddDays(16), true, 600},
		{"day 20 adds five days", 20000, served.AddDays(20), true, 3000},
		{"capped at the fine", 20000, served.AddDays(15 + 34), true, 20000},
		{"cap reached exactly never exceeded", 20000, served.AddDays(15 + 400), true, 20000},
		{"fractions of a fen dropped", 333, served.AddDays(16), true, 9},
		{"late fee not applicable", 20000, served.AddDays(40), false, 0},
		{"paid before served date", 20000, served.AddDays(-3), true, 0},
		{"across a month end", 5000, bizdate.Date{Year: 2026, Month: 12, Day: 17}, true, 5000 * 3 * 31 / 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := penalty.LateFee(tt.fine, served, tt.payDay, tt.applies); got != tt.want {
				t.Fatalf("LateFee = %v, want %v", got, tt.want)
			}
			_, fee, total := penalty.Due(tt.fine, served, tt.payDay, tt.applies)
			if total != tt.fine+fee || fee > tt.fine {
				t.Fatalf("Due total %v fee %v", total, fee)
			}
		})
	}
}
