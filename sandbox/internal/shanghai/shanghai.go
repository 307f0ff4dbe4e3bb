// Package shanghai holds the business time zone of FinePay, Asia/Shanghai, and the two text forms
// the outside protocols use: RFC 3339 times with "+08:00" and YYYY-MM-DD dates.
package shanghai

import (
	"time"
	_ "time/tzdata" // the zone must not depend on the host's tz database
)

// Location is Asia/Shanghai.
var Location = load()

func load() *time.Location {
	loc, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		// China has kept UTC+8 without daylight saving since 1991.
		return time.FixedZone("CST", 8*60*60)
	}
	return loc
}

// DateLayout is the layout of a business date.
const DateLayout = "2006-01-02"

// Time formats t as RFC 3339 in Asia/Shanghai, to the second ("2026-11-27T10:05:00+08:00").
func Time(t time.Time) string {
	return t.In(Location).Format(time.RFC3339)
}

// Date formats the Asia/Shanghai calendar day of t ("2026-11-27").
func Date(t time.Time) string {
	return t.In(Location).Format(DateLayout)
}

// ParseDate parses a YYYY-MM-DD business date as midnight in Asia/Shanghai.
func ParseDate(s string) (time.Time, error) {
	return time.ParseInLocation(DateLayout, s, Location)
}
