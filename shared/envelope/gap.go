package envelope

import (
	"errors"
	"fmt"
	"regexp"
	"time"
)

// TypeLaneGap is the filler the sending ferry puts at a lane sequence that was handed out to a
// producer whose transaction then rolled back (or died), so that the lane stays contiguous. It
// travels in either direction, is never queued by a service, and the receiving inbox stores it
// as already consumed: no service ever sees one.
const TypeLaneGap = "ferry.gap"

// Either is the direction of a type that may travel both ways (only TypeLaneGap); it has no
// lane of its own.
const Either Direction = ""

// LaneGap says which lane sequence the filler stands for.
type LaneGap struct {
	Lane string `json:"lane"`
	Seq  int64  `json:"seq"`
}

func (LaneGap) MessageType() string { return TypeLaneGap }

var reLane = regexp.MustCompile(`^(to-gateway|to-core)\.[0-9]{1,2}$`)

func (g *LaneGap) Validate() error {
	return errors.Join(need(reLane.MatchString(g.Lane), "lane"), need(g.Seq >= 1, "seq"))
}

// NewLaneGap returns the filler for sequence seq of lane.
func NewLaneGap(lane string, seq int64, at time.Time) (Envelope, error) {
	return New(fmt.Sprintf("%s:%s:%d", TypeLaneGap, lane, seq), lane, at, &LaneGap{Lane: lane, Seq: seq})
}
