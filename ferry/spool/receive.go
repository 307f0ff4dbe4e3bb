package spool

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"finepay/ferry/audit"
	"finepay/ferry/bundle"
	"finepay/ferry/relay"
)

// kindForeign is a file with none of our magics.
const kindForeign Kind = "foreign"

// seen is what the spool knows of one file in in/.
type seen struct {
	size      int64
	mtime     time.Time
	changedAt time.Time      // when this spool last saw the size or time change
	looks     int            // looks at this version that failed verification
	held      *bundle.Header // a verified bundle waiting for an earlier one of its lane
	done      bool           // handled, but could not be removed: leave it while unchanged
}

// incoming is a file read in one step.
type incoming struct {
	name string
	st   *seen
	raw  []byte // nil for a held bundle not read again
	kind Kind
	h    bundle.Header
	ack  bundle.Ack
	man  Manifest
	req  Request
	err  error // why it does not verify
}

func (in *incoming) remote() string { return "spool:" + in.name }

// kindWord names a kind for metrics and records.
func kindWord(k Kind) string {
	switch k {
	case KindBundle:
		return "bundle"
	case KindAck:
		return "ack"
	case KindManifest:
		return "manifest"
	case KindRequest:
		return "request"
	}
	return "foreign"
}

// receive handles what is in in/: acknowledgements first, then bundles in lane and sequence
// order, then manifests and resend requests; a file that does not verify waits until it has
// been still for Settle (the appliance may be writing it) and is then quarantined.
func (s *Spool) receive(ctx context.Context, now time.Time) {
	entries, err := os.ReadDir(s.cfg.In)
	if err != nil {
		s.log.Warn("spool: read the incoming directory", "dir", s.cfg.In, "err", err)
		s.setReadErr(fmt.Errorf("spool: cannot read %s: %w", s.cfg.In, err))
		return
	}
	s.setReadErr(nil)
	marks, err := s.r.Marks(ctx)
	if err != nil {
		s.log.Warn("spool: read the receiving lanes", "err", err)
		return
	}
	s.marks = marks
	present := make(map[string]bool, len(entries))
	var acks, bundles, manifests, requests, bad []*incoming
	for _, e := range entries {
		name := e.Name()
		if skipName(name) || !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // gone meanwhile
		}
		present[name] = true
		st := s.files[name]
		if st == nil || st.size != info.Size() || !st.mtime.Equal(info.ModTime()) {
			st = &seen{size: info.Size(), mtime: info.ModTime(), changedAt: now}
			s.files[name] = st
		}
		switch {
		case st.done:
			continue
		case st.held != nil:
			bundles = append(bundles, &incoming{name: name, st: st, kind: KindBundle, h: *st.held})
			continue
		}
		raw, err := readFile(filepath.Join(s.cfg.In, name), s.maxRead)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				s.log.Warn("spool: read incoming file", "file", name, "err", err)
			}
			continue
		}
		in := s.classify(name, st, raw)
		switch {
		case in.err != nil:
			bad = append(bad, in)
		case in.kind == KindAck:
			acks = append(acks, in)
		case in.kind == KindBundle:
			bundles = append(bundles, in)
		case in.kind == KindManifest:
			manifests = append(manifests, in)
		case in.kind == KindRequest:
			requests = append(requests, in)
		}
	}
	for name := range s.files {
		if !present[name] {
			delete(s.files, name)
		}
	}
	defer s.countHeld()
	for _, in := range acks {
		if !s.takeAck(ctx, in) {
			return
		}
	}
	slices.SortFunc(bundles, func(a, b *incoming) int {
		return cmp.Or(strings.Compare(a.h.Lane, b.h.Lane), cmp.Compare(a.h.FirstSeq, b.h.FirstSeq), strings.Compare(a.name, b.name))
	})
	for _, in := range bundles {
		if !s.takeBundle(ctx, in) {
			return
		}
	}
	slices.SortFunc(manifests, func(a, b *incoming) int { return a.man.At.Compare(b.man.At) })
	for _, in := range manifests {
		if !s.takeManifest(ctx, in, now) {
			return
		}
	}
	for _, in := range requests {
		s.takeRequest(in, now)
	}
	for _, in := range bad {
		in.st.looks++
		if in.st.looks < settleLooks || now.Sub(in.st.changedAt) < s.cfg.Settle {
			continue // perhaps still being copied
		}
		if !s.reject(ctx, in) {
			return
		}
	}
}

// classify tells a file's kind by its magic and verifies it: a bundle's signature (its contents
// are checked by Accept), an acknowledgement, manifest or request whole.
func (s *Spool) classify(name string, st *seen, raw []byte) *incoming {
	in := &incoming{name: name, st: st, raw: raw}
	peerKey := s.rc.Keys.PeerSign
	switch {
	case bytes.HasPrefix(raw, []byte(bundle.Magic)):
		in.kind = KindBundle
		p, err := bundle.Parse(raw, s.rc.Limits)
		if err == nil {
			err = p.Verify(peerKey)
		}
		if err == nil {
			in.h = p.Header
		}
		in.err = err
	case bytes.HasPrefix(raw, []byte(bundle.AckMagic)):
		in.kind = KindAck
		in.ack, in.err = bundle.OpenAck(raw, peerKey)
	case bytes.HasPrefix(raw, []byte(ManifestMagic)):
		in.kind = KindManifest
		in.man, in.err = OpenManifest(raw, peerKey)
		if in.err == nil && (in.man.From != s.rc.Peer || in.man.To != s.rc.Node) {
			in.err = fmt.Errorf("%w: manifest from %q to %q", relay.ErrWrongParty, in.man.From, in.man.To)
		}
	case bytes.HasPrefix(raw, []byte(RequestMagic)):
		in.kind = KindRequest
		in.req, in.err = OpenRequest(raw, peerKey)
		if in.err == nil && (in.req.From != s.rc.Peer || in.req.To != s.rc.Node) {
			in.err = fmt.Errorf("%w: request from %q to %q", relay.ErrWrongParty, in.req.From, in.req.To)
		}
	default:
		in.kind = kindForeign
		in.err = fmt.Errorf("%w: not a spool file (magic)", bundle.ErrMalformed)
	}
	return in
}

// takeAck hands a verified acknowledgement to the relay, which checks it, audits it and retires
// the rows it covers. It reports false when the step must stop (database or audit trail).
func (s *Spool) takeAck(ctx context.Context, in *incoming) bool {
	err := s.r.AcceptAck(ctx, in.raw, in.remote())
	var rej *relay.RejectedError
	switch {
	case err == nil:
		s.m.files.WithLabelValues("ack", "applied").Inc()
		if ls := s.lanes[in.ack.Lane]; ls != nil {
			s.acked(ls, in.ack.Seq)
		}
	case errors.As(err, &rej):
		// Audited by the relay (ack.received, rejected); kept for the record.
		s.m.files.WithLabelValues("ack", "rejected").Inc()
		q, qerr := s.r.Quarantine(in.raw)
		s.log.Warn("spool: acknowledgement refused", "file", in.name, "reason", rej.Reason, "err", err, "quarantined", q, "quarantine_err", qerr)
	default:
		s.log.Warn("spool: cannot take acknowledgement now", "file", in.name, "err", err)
		return false
	}
	s.removeIn(in)
	return true
}

// takeBundle commits a verified bundle whose turn has come (Accept: the relay's receive path)
// and queues its acknowledgement; one that starts past the lane's next sequence is held.
func (s *Spool) takeBundle(ctx context.Context, in *incoming) bool {
	h := in.h
	hwm := s.marks[h.Lane]
	ours := h.From == s.rc.Peer && h.To == s.rc.Node
	if dir, err := bundle.LaneDirection(h.Lane); ours && err == nil && dir == s.rc.Side.Receives() && h.FirstSeq > hwm+1 {
		s.hold(in)
		return true
	}
	raw := in.raw
	if raw == nil {
		var err error
		if raw, err = readFile(filepath.Join(s.cfg.In, in.name), s.maxRead); err != nil {
			return true // gone: renamed or deleted by the appliance
		}
	}
	ack, err := s.r.Accept(ctx, raw, in.remote())
	var gap *relay.GapError
	var rej *relay.RejectedError
	switch {
	case err == nil:
		result := "applied"
		if h.LastSeq <= hwm {
			result = "duplicate"
		}
		s.m.files.WithLabelValues("bundle", result).Inc()
		p, perr := bundle.ParseAck(ack)
		if perr != nil {
			s.log.Error("spool: own acknowledgement does not parse", "err", perr)
			return false
		}
		s.marks[h.Lane] = max(hwm, p.Ack.Seq)
		if !s.cfg.OneWay {
			s.queueAck(h.Lane, p.Ack.Seq, p.Ack.BundleID, ack)
		}
	case errors.As(err, &gap):
		s.marks[h.Lane] = gap.Expected - 1
		s.hold(in)
		return true
	case errors.As(err, &rej):
		s.m.files.WithLabelValues("bundle", "rejected").Inc() // quarantined and audited by the relay
	default:
		s.log.Warn("spool: cannot take bundle now; will retry", "file", in.name, "bundle", h.String(), "err", err)
		return false
	}
	s.removeIn(in)
	return true
}

func (s *Spool) hold(in *incoming) {
	if in.st.held == nil {
		h := in.h
		in.st.held = &h
		s.m.files.WithLabelValues("bundle", "held").Inc()
		s.log.Debug("spool: bundle held until the lane reaches it", "file", in.name, "bundle", in.h.String(), "hwm", s.marks[in.h.Lane])
	}
}

func (s *Spool) countHeld() {
	n := 0
	for _, st := range s.files {
		if st.held != nil {
			n++
		}
	}
	s.m.held.Set(float64(n))
}

// reject quarantines and audits a file that still does not verify once settled. Bundles and
// foreign files go through the relay's Accept, which refuses, quarantines and audits them
// (bundle.rejected) exactly as it does on the link; the spool's other files are quarantined and
// audited here, also as bundle.rejected. A file leaves in/ only after its record is written.
func (s *Spool) reject(ctx context.Context, in *incoming) bool {
	word := kindWord(in.kind)
	if in.kind == KindBundle || in.kind == kindForeign {
		ack, err := s.r.Accept(ctx, in.raw, in.remote())
		var rej *relay.RejectedError
		switch {
		case errors.As(err, &rej):
			s.m.files.WithLabelValues(word, "rejected").Inc()
		case err == nil && ack != nil:
			s.m.files.WithLabelValues(word, "applied").Inc() // it verified after all
		default:
			s.log.Warn("spool: cannot refuse file now; will retry", "file", in.name, "err", err)
			return false
		}
		s.removeIn(in)
		return true
	}
	reason := fmt.Sprintf("%s: spool %s file %s: %v", bundle.Reason(in.err), word, in.name, in.err)
	q, qerr := s.r.Quarantine(in.raw)
	switch {
	case qerr != nil:
		reason += "; quarantine failed: " + qerr.Error()
	case q != "":
		reason += "; quarantined as " + q
	}
	rec := audit.Record{Event: audit.BundleRejected, Result: audit.Rejected, Peer: s.peer(in.remote()), Reason: reason}
	if err := s.record(ctx, rec); err != nil {
		s.log.Error("spool: cannot audit refused file; it stays until it can", "file", in.name, "err", err)
		return false
	}
	s.m.files.WithLabelValues(word, "rejected").Inc()
	s.log.Warn("spool: file refused", "file", in.name, "kind", word, "err", in.err, "quarantined", q)
	s.removeIn(in)
	return true
}

// removeIn deletes a handled file from in/, unless another file took its name meanwhile (the
// next step reads that one).
func (s *Spool) removeIn(in *incoming) {
	path := filepath.Join(s.cfg.In, in.name)
	if info, err := os.Lstat(path); err == nil && (info.Size() != in.st.size || !info.ModTime().Equal(in.st.mtime)) {
		delete(s.files, in.name)
		return
	}
	err := os.Remove(path)
	if err == nil || errors.Is(err, fs.ErrNotExist) {
		delete(s.files, in.name)
		return
	}
	in.st.done = true
	in.st.held = nil
	s.log.Error("spool: cannot remove a handled incoming file; it is left alone while unchanged", "file", in.name, "err", err)
}

// takeManifest reads the peer's manifest: acknowledgements the peer lacks are given again, the
// bundles it lists that did not arrive in time are asked for again (two-way) or reported
// (one-way), and in one-way mode its received marks confirm what this side sent.
func (s *Spool) takeManifest(ctx context.Context, in *incoming, now time.Time) bool {
	m := in.man
	// Stale: dated no later than the last manifest handled (the appliance reordered them). The
	// time kept for that is never more than peerClockLead ahead of this side's clock when kept
	// (below); if it is now, this side's clock was set back, and it is not to be trusted.
	if !m.At.After(s.peerAt) && !s.peerAt.After(now.Add(peerClockLead)) {
		s.m.files.WithLabelValues("manifest", "stale").Inc()
		s.removeIn(in)
		return true
	}
	if m.OneWay != s.cfg.OneWay && !s.warnedMode {
		s.warnedMode = true
		s.log.Error("spool: the peer runs the other mode (-spool-one-way must be the same on both sides)", "peer_one_way", m.OneWay, "one_way", s.cfg.OneWay)
	}
	var wants []Want
	for _, sl := range m.Sent {
		if dir, err := bundle.LaneDirection(sl.Lane); err != nil || dir != s.rc.Side.Receives() {
			s.log.Warn("spool: the peer's manifest lists a lane this side does not receive", "lane", sl.Lane, "file", in.name)
			continue
		}
		hwm := s.marks[sl.Lane]
		switch {
		case sl.Acked > hwm && m.OneWay:
			if !s.retiredUnseen(ctx, m, sl.Lane, hwm, sl.Acked) {
				return false
			}
		case sl.Acked > hwm:
			s.log.Error("spool: the peer counts as acknowledged more than this side committed (was this database restored?)",
				"lane", sl.Lane, "peer_acked", sl.Acked, "hwm", hwm)
		case sl.Acked < hwm && !s.cfg.OneWay:
			s.reack(sl.Lane, hwm)
		}
		var missing []Missing
		for _, e := range sl.Bundles {
			if e.LastSeq <= hwm || s.holding(sl.Lane, e) || m.At.Sub(e.Written) < s.cfg.ManifestInterval {
				continue
			}
			missing = append(missing, Missing{BundleID: e.BundleID, FirstSeq: e.FirstSeq, LastSeq: e.LastSeq})
		}
		if len(missing) > 0 {
			wants = append(wants, Want{Lane: sl.Lane, HWM: hwm, Missing: missing})
		}
	}
	if len(wants) > 0 && !s.missing(ctx, m, wants, now) {
		return false
	}
	if s.cfg.OneWay {
		for _, mk := range m.Received {
			if dir, err := bundle.LaneDirection(mk.Lane); err == nil && dir == s.rc.Side.Sends() {
				if !s.confirm(ctx, mk.Lane, mk.HWM, m.ManifestID) {
					return false
				}
			}
		}
	}
	// A manifest dated further ahead of this side's clock than peerClockLead (the peer's clock
	// ran ahead, then was set right) must not make the peer's next manifests stale for as long.
	s.peerAt = m.At
	if lead := now.Add(peerClockLead); s.peerAt.After(lead) {
		s.peerAt = lead
	}
	s.m.files.WithLabelValues("manifest", "applied").Inc()
	s.removeIn(in)
	return true
}

// retiredUnseen audits, once, that a one-way peer retired sequences this side never received:
// they will not come, and the lane stops before them (the ferry never skips a sequence).
func (s *Spool) retiredUnseen(ctx context.Context, m Manifest, lane string, hwm, acked int64) bool {
	key := fmt.Sprintf("retired:%d", acked)
	if s.reported[lane] == key {
		return true
	}
	rec := audit.Record{Event: EventMissing, Result: audit.Rejected, Lane: lane, FirstSeq: hwm + 1, LastSeq: acked, Peer: s.rc.Peer,
		Reason: fmt.Sprintf("the one-way peer's manifest %s shows sequences %d..%d retired without confirmation: they will not come; the lane stops at %d until an operator decides",
			m.ManifestID, hwm+1, acked, hwm+1)}
	if err := s.record(ctx, rec); err != nil {
		s.log.Error("spool: cannot audit sequences lost in one-way mode", "lane", lane, "err", err)
		return false
	}
	s.reported[lane] = key
	s.log.Error("spool: one-way peer retired sequences that never arrived; the lane stops before them", "lane", lane, "first", hwm+1, "last", acked)
	return true
}

// holding reports whether a held file covers the bundle e of lane.
func (s *Spool) holding(lane string, e Entry) bool {
	for _, st := range s.files {
		if h := st.held; h != nil && h.Lane == lane && (h.BundleID == e.BundleID || (h.FirstSeq <= e.FirstSeq && h.LastSeq >= e.LastSeq)) {
			return true
		}
	}
	return false
}

// missing audits newly missing bundles (bundle.missing) and, two-way, queues a resend request.
func (s *Spool) missing(ctx context.Context, m Manifest, wants []Want, now time.Time) bool {
	for _, w := range wants {
		s.m.missing.Add(float64(len(w.Missing)))
		first := w.Missing[0]
		if s.reported[w.Lane] == first.BundleID {
			continue
		}
		action := "asked for a resend"
		if s.cfg.OneWay {
			action = "one-way: no way back; waiting for the sender's scheduled resend"
		}
		ranges := make([]string, len(w.Missing))
		for i, b := range w.Missing {
			ranges[i] = fmt.Sprintf("%d..%d", b.FirstSeq, b.LastSeq)
		}
		rec := audit.Record{Event: EventMissing, Result: audit.OK, BundleID: first.BundleID, Lane: w.Lane,
			FirstSeq: first.FirstSeq, LastSeq: w.Missing[len(w.Missing)-1].LastSeq, Peer: s.rc.Peer,
			Reason: fmt.Sprintf("listed in the peer's manifest %s of %s, not arrived (committed up to %d; missing %s); %s",
				m.ManifestID, m.At.Format(time.RFC3339Nano), w.HWM, strings.Join(ranges, ", "), action)}
		if err := s.record(ctx, rec); err != nil {
			s.log.Error("spool: cannot audit missing bundles", "lane", w.Lane, "err", err)
			return false
		}
		s.reported[w.Lane] = first.BundleID
		s.log.Warn("spool: bundles missing (dropped by the appliance?)", "lane", w.Lane, "missing", strings.Join(ranges, ","), "one_way", s.cfg.OneWay)
	}
	if s.cfg.OneWay {
		return true
	}
	id, err := s.newID()
	if err != nil {
		s.log.Error("spool: resend request", "err", err)
		return true
	}
	raw, err := SealRequest(s.rc.Rand, Request{RequestID: id, From: s.rc.Node, To: s.rc.Peer, At: now, ManifestID: m.ManifestID, Lanes: wants}, s.rc.Keys.Signer)
	if err != nil {
		s.log.Error("spool: seal resend request", "err", err)
		return true
	}
	serial := s.nextSerial(now)
	s.request = &queuedFile{name: Name{Node: s.rc.Node, Lane: laneRequest, First: serial, Last: serial, ID: id, Kind: KindRequest}.String(), raw: raw}
	return true
}

// takeRequest marks the bundles the peer asks for as due at once, unless they were written
// again since the manifest the request answers.
func (s *Spool) takeRequest(in *incoming, now time.Time) {
	var since time.Time
	for _, sm := range s.manifests {
		if sm.id == in.req.ManifestID {
			since = sm.at
		}
	}
	n := 0
	for _, w := range in.req.Lanes {
		ls := s.lanes[w.Lane]
		if ls == nil {
			continue
		}
		if w.HWM < ls.acked {
			s.log.Error("spool: the peer committed less than it acknowledged (was its database restored?)", "lane", w.Lane, "peer_hwm", w.HWM, "acked", ls.acked)
		}
		for _, miss := range w.Missing {
			f := ls.find(miss)
			if f == nil || f.raw != nil || (!since.IsZero() && f.last.After(since)) {
				continue
			}
			f.due, f.reason = now, "request"
			n++
		}
	}
	s.log.Info("spool: resend requested", "file", in.name, "bundles", n)
	s.m.files.WithLabelValues("request", "applied").Inc()
	s.removeIn(in)
}
