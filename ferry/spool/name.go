package spool

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
)

// Kind is what a spool file holds, as its name's extension says. The receiver goes by a file's
// content, never by its name: names are for people, the appliance and the sender's own
// bookkeeping.
type Kind string

// The kinds of spool files.
const (
	KindBundle   Kind = "fpb" // a bundle (package bundle)
	KindAck      Kind = "fpa" // an acknowledgement (package bundle)
	KindManifest Kind = "fpm" // a manifest (this package)
	KindRequest  Kind = "fpr" // a resend request (this package)
)

// The lane part of the names of files that are not about one lane.
const (
	laneManifest = "manifest"
	laneRequest  = "resend"
)

// noBundle is the ID part of the name of a cumulative acknowledgement.
const noBundle = "00000000000000000000000000000000"

// Name is a spool file name, NODE-LANE-FIRST-LAST-ID.EXT:
//
//   - bundle (.fpb): the sending node, the lane, the first and last sequence, the bundle ID;
//   - acknowledgement (.fpa): the acknowledging node, the lane, the acknowledged sequence twice,
//     the bundle answered (32 zeros for a cumulative acknowledgement);
//   - manifest (.fpm) and resend request (.fpr): the writing node, "manifest" or "resend", the
//     file's serial number twice (Unix milliseconds when written, increasing), its ID.
type Name struct {
	Node        string
	Lane        string // a lane, or "manifest" or "resend"
	First, Last int64
	ID          string // 32 lowercase hex digits
	Kind        Kind
}

var reName = regexp.MustCompile(`^([a-z0-9][a-z0-9.-]{0,62})-((?:to-core|to-gateway)\.[0-9]{1,4}|manifest|resend)-(0|[1-9][0-9]{0,18})-(0|[1-9][0-9]{0,18})-([0-9a-f]{32})\.(fpb|fpa|fpm|fpr)$`)

// ErrName says a file name is not a spool file name.
var ErrName = errors.New("spool: not a spool file name")

// ParseName parses a spool file name.
func ParseName(s string) (Name, error) {
	m := reName.FindStringSubmatch(s)
	if m == nil {
		return Name{}, fmt.Errorf("%w: %q", ErrName, s)
	}
	first, err1 := strconv.ParseInt(m[3], 10, 64)
	last, err2 := strconv.ParseInt(m[4], 10, 64)
	if err1 != nil || err2 != nil {
		return Name{}, fmt.Errorf("%w: %q: sequence out of range", ErrName, s)
	}
	n := Name{Node: m[1], Lane: m[2], First: first, Last: last, ID: m[5], Kind: Kind(m[6])}
	if err := n.check(); err != nil {
		return Name{}, fmt.Errorf("%w: %q: %v", ErrName, s, err)
	}
	return n, nil
}

func (n Name) check() error {
	perLane := n.Lane != laneManifest && n.Lane != laneRequest
	switch n.Kind {
	case KindBundle:
		if !perLane || n.First < 1 || n.Last < n.First {
			return errors.New("a bundle names a lane and sequences first <= last")
		}
	case KindAck:
		if !perLane || n.First != n.Last {
			return errors.New("an acknowledgement names a lane and its sequence twice")
		}
	case KindManifest, KindRequest:
		want := laneManifest
		if n.Kind == KindRequest {
			want = laneRequest
		}
		if n.Lane != want || n.First != n.Last {
			return fmt.Errorf("a %s file is named %q with its serial twice", n.Kind, want)
		}
	default:
		return fmt.Errorf("kind %q", n.Kind)
	}
	return nil
}

// String is the file name.
func (n Name) String() string {
	return n.Node + "-" + n.Lane + "-" + strconv.FormatInt(n.First, 10) + "-" + strconv.FormatInt(n.Last, 10) + "-" + n.ID + "." + string(n.Kind)
}
