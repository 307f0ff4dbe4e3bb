// Package penalty holds the late-fee rule for traffic fines (加处罚款).
//
// A fine is due within 15 days of the decision being served (Administrative Penalty Law, art.
// 67). From the 16th day on, 3% of the fine is added for each day, and the total added never
// exceeds the fine itself (art. 72). The amount due is computed for the business date of payment
// (Asia/Shanghai).
package penalty

import (
	"finepay/shared/bizdate"
	"finepay/shared/money"
)

// GraceDays is the number of days after service within which no late fee is added.
const GraceDays = 15

// DailyRatePercent is the daily late fee as a percentage of the fine.
const DailyRatePercent = 3

// DaysLate returns how many days of late fee have accrued when paying on payDay for a decision
// served on served: 0 up to and including served+15.
func DaysLate(served, payDay bizdate.Date) int {
	n := payDay.DaysSince(served) - GraceDays
	if n < 0 {
		return 0
	}
	return n
}

// LateFee returns the late fee due when paying on payDay. It is zero when late fees do not apply
// to the bill, and never more than the fine. Fractions of a fen are dropped.
func LateFee(fine money.Fen, served, payDay bizdate.Date, applies bool) money.Fen {
	if !applies || fine <= 0 {
		return 0
	}
	days := int64(DaysLate(served, payDay))
	if days == 0 {
		return 0
	}
	// Cap in days first so that the product cannot overflow for very late payments.
	if days > 100/DailyRatePercent+1 {
		return fine
	}
	fee := money.Fen(int64(fine) * DailyRatePercent * days / 100)
	return min(fee, fine)
}

// Due returns the fine, the late fee and their total for a payment on payDay.
func Due(fine money.Fen, served, payDay bizdate.Date, applies bool) (fineDue, lateFee, total money.Fen) {
	lateFee = LateFee(fine, served, payDay, applies)
	return fine, lateFee, fine + lateFee
}
