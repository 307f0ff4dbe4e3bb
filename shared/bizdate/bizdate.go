// Package bizdate holds business dates: calendar days in Asia/Shanghai, in which reconciliation
// days, due dates, late fees and channel order expiry are counted.
package bizdate

import (
	"fmt"
	"time"
	_ "time/tzdata" // the zone database is embedded, so a machine without one still knows Asia/Shanghai
)

// Location is Asia/Shanghai.
var Location = mustLoad("Asia/Shanghai")

func mustLoad(name string) *time.Location {
	l, err := time.LoadLocation(name)
	if err != nil {
		panic(err)
	}
	return l
}

// Date is a calendar day in Asia/Shanghai.
type Date struct {
	Year  int
	Month time.Month
	Day   int
}

// Of returns the business date of an instant.
func Of(t time.Time) Date {
	y, m, d := t.In(Location).Date()
	return Date{y, m, d}
}

// Parse reads YYYY-MM-DD.
func Parse(s string) (Date, error) {
	t, err := time.ParseInLocation(time.DateOnly, s, Location)
	if err != nil {
		return Date{}, fmt.Errorf("bizdate: %q is not a date: %w", s, err)
	}
	return Of(t), nil
}

// String renders YYYY-MM-DD.
func (d Date) String() string { return fmt.Sprintf("%04d-%02d-%02d", d.Year, d.Month, d.Day) }

// Start is 00:00:00 of the day in Asia/Shanghai.
func (d Date) Start() time.Time { return time.Date(d.Year, d.Month, d.Day, 0, 0, 0, 0, Location) }

// End is the last instant of the day, 23:59:59 in Asia/Shanghai (the validity end of a channel
// order created that day).
func (d Date) End() time.Time { return d.Start().AddDate(0, 0, 1).Add(-time.Second) }

// AddDays returns the date n days later (earlier when n < 0).
func (d Date) AddDays(n int) Date { return Of(d.Start().AddDate(0, 0, n).Add(time.Hour)) }

// DaysSince returns the number of calendar days from o to d (negative when d is before o).
func (d Date) DaysSince(o Date) int {
	a := time.Date(d.Year, d.Month, d.Day, 0, 0, 0, 0, time.UTC)
	b := time.Date(o.Year, o.Month, o.Day, 0, 0, 0, 0, time.UTC)
	return int(a.Sub(b).Hours() / 24)
}

// Before reports whether d is before o.
func (d Date) Before(o Date) bool { return d.DaysSince(o) < 0 }

// IsZero reports whether d is the zero Date.
func (d Date) IsZero() bool { return d == Date{} }
