package spool

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"finepay/ferry/audit"
	"finepay/ferry/bundle"
	"finepay/ferry/outbox"
	"finepay/ferry/relay"
	"finepay/shared/gm"
)

// flight is a bundle written (or sealed and waiting to be written) and not yet acknowledged.
// Two-way, its bytes are kept (within maxKept for all lanes) so that a resend is the same file;
// otherwise only its header is, and a resend seals the same messages again from the outbox under
// the same bundle ID (relay.Reseal).
type flight struct {
	h      bundle.Header
	name   string
	raw    []byte    // sealed and not yet written: the spool was full or the write failed
	kept   []byte    // the bytes written, for a resend of the same file
	size   int       // bytes of the file as sealed first (a resend is about as large)
	sum    string    // SM3 of the file last written, hex
	first  time.Time // first written
	last   time.Time // last written
	sends  int
	due    time.Time // when to write it again
	reason string    // why it is due: "timer" or "request"
}

// laneOut is the sending state of one lane.
type laneOut struct {
	name    string
	acked   int64 // the highest sequence acknowledged (or retired)
	next    int64 // the last sequence sealed
	flights []*flight
}

// find returns the flight of bundle m, or one that covers its first sequence (after a restart
// the same messages travel under new bundle IDs).
func (l *laneOut) find(m Missing) *flight {
	for _, f := range l.flights {
		if f.h.BundleID == m.BundleID || (f.h.FirstSeq <= m.FirstSeq && m.FirstSeq <= f.h.LastSeq) {
			return f
		}
	}
	return nil
}

// send writes what is due: acknowledgements and resend requests, bundles to write again, new
// bundles as far as the window and the spool's bound allow; in one-way mode it also retires what
// has aged out.
func (s *Spool) send(ctx context.Context, lanes map[string]outbox.Lane, now time.Time) {
	s.blocked = false
	size, err := s.out.size()
	if err != nil {
		s.writeFailed("(reading the directory)", err)
		s.setFull()
		return
	}
	s.outBytes = size
	s.writeControl()
	names := make([]string, 0, len(lanes))
	for name := range lanes {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		l := lanes[name]
		ls := s.lanes[name]
		if ls == nil {
			ls = &laneOut{name: name, acked: l.AckedSeq, next: l.AckedSeq}
			s.lanes[name] = ls
		}
		s.acked(ls, l.AckedSeq)
		if s.cfg.OneWay && !s.retireOld(ctx, ls, now) {
			continue
		}
		if !s.resend(ctx, ls, now) {
			continue
		}
		s.fill(ctx, ls, l, now)
	}
	s.m.outBytes.Set(float64(s.outBytes))
	s.setFull()
}

// writeControl writes the queued acknowledgements and resend request. Each supersedes the one
// before it, whose file is removed if the appliance has not taken it; they use the part of the
// bound kept from bundles.
func (s *Spool) writeControl() {
	lanes := make([]string, 0, len(s.acks))
	for lane := range s.acks {
		lanes = append(lanes, lane)
	}
	slices.Sort(lanes)
	for _, lane := range lanes {
		q := s.acks[lane]
		id := q.bundleID
		if id == "" {
			id = noBundle
		}
		name := Name{Node: s.rc.Node, Lane: lane, First: q.seq, Last: q.seq, ID: id, Kind: KindAck}.String()
		if !s.writeControlFile(name, s.ackFiles[lane], q.raw) {
			return
		}
		s.ackFiles[lane] = name
		delete(s.acks, lane)
	}
	if r := s.request; r != nil {
		if !s.writeControlFile(r.name, s.requestFile, r.raw) {
			return
		}
		s.requestFile, s.request = r.name, nil
	}
}

// writeControlFile writes an acknowledgement, request or manifest that replaces the file old,
// within the whole bound.
func (s *Spool) writeControlFile(name, old string, raw []byte) bool {
	oldSize := s.out.sizeOf(old)
	if s.outBytes-oldSize+int64(len(raw)) > s.cfg.MaxBytes {
		s.blocked = true
		return false
	}
	if !s.write(name, raw) {
		return false
	}
	s.outBytes += int64(len(raw))
	if old != "" && old != name && s.out.remove(old) {
		s.outBytes -= oldSize
	}
	return true
}

// acked notes that lane is acknowledged (or retired) up to seq: the flights it covers are
// dropped and their files removed from out/ if the appliance has not taken them. A flight it
// covers only in part is dropped with all after it, to be sealed afresh from seq.
func (s *Spool) acked(ls *laneOut, seq int64) {
	if seq <= ls.acked {
		return
	}
	ls.acked = seq
	ls.next = max(ls.next, seq)
	i := 0
	for i < len(ls.flights) && ls.flights[i].h.LastSeq <= seq {
		s.drop(ls.flights[i])
		i++
	}
	ls.flights = ls.flights[i:]
	if len(ls.flights) > 0 && ls.flights[0].h.FirstSeq <= seq {
		for _, f := range ls.flights {
			s.drop(f)
		}
		ls.flights, ls.next = nil, seq
	}
}

// drop forgets a flight: its file leaves out/ if the appliance has not taken it.
func (s *Spool) drop(f *flight) {
	s.out.remove(f.name)
	s.keptBytes -= int64(len(f.kept))
	f.kept = nil
}

// gap is how long after its n-th write a bundle is written again: ResendAfter, doubling with
// each write; two-way the doubling stops at 8 × ResendAfter.
func (s *Spool) gap(n int) time.Duration {
	shift := min(max(n-1, 0), 20)
	if !s.cfg.OneWay {
		shift = min(shift, 3)
	}
	return s.rc.ResendAfter << shift
}

// bundleRoom is the part of the bound bundles may fill: seven eighths. The last eighth is kept
// for acknowledgements, resend requests and manifests, so that they still go out while bundles
// keep the spool at its bound.
func (s *Spool) bundleRoom() int64 { return s.cfg.MaxBytes - s.cfg.MaxBytes/8 }

// fits reports whether a bundle of n bytes keeps out/ within the bundles' room.
func (s *Spool) fits(n int) bool { return s.outBytes+int64(n) <= s.bundleRoom() }

// writeBundle writes f (raw is its sealed bytes) into out/ within the bound. On failure f keeps
// nothing but its header (or its raw bytes when it was never written) and is tried again later.
func (s *Spool) writeBundle(f *flight, raw []byte, now time.Time) bool {
	if !s.fits(len(raw)) {
		s.blocked = true
		return false
	}
	if !s.write(f.name, raw) {
		return false
	}
	s.outBytes += int64(len(raw))
	sum := gm.SM3(raw)
	f.raw, f.sum, f.last = nil, hex.EncodeToString(sum[:]), now
	if f.kept == nil && !s.cfg.OneWay && s.keptBytes+int64(len(raw)) <= maxKept {
		f.kept = raw
		s.keptBytes += int64(len(raw))
	}
	if f.first.IsZero() {
		f.first = now
	}
	f.sends++
	f.due, f.reason = now.Add(s.gap(f.sends)), "timer"
	s.batch = true
	return true
}

// resend writes the lane's bundles that are due: first any sealed and never written, then those
// not acknowledged in time or asked for again. Two-way, the timer applies to the lane's oldest
// bundle only: the later ones are most likely held by the peer behind it, and the peer's resend
// requests name those the appliance lost. A bundle whose file is still in out/ (the appliance
// has not taken it) is not written again. It reports false when the lane must wait.
func (s *Spool) resend(ctx context.Context, ls *laneOut, now time.Time) bool {
	for i, f := range ls.flights {
		if f.raw != nil {
			if !s.writeBundle(f, f.raw, now) {
				return false
			}
			continue
		}
		if now.Before(f.due) || (i > 0 && !s.cfg.OneWay && f.reason != "request") {
			continue
		}
		if s.out.has(f.name) {
			f.due = now.Add(s.gap(f.sends))
			continue
		}
		if !s.fits(f.size) {
			s.blocked = true
			return false
		}
		raw := f.kept
		if raw == nil {
			var err error
			raw, err = s.r.Reseal(ctx, f.h)
			if errors.Is(err, relay.ErrRetired) {
				return true // acknowledged meanwhile: the next step drops it
			}
			if err != nil {
				s.log.Warn("spool: seal a bundle again", "bundle", f.h.String(), "err", err)
				return false
			}
		}
		reason := f.reason
		if !s.writeBundle(f, raw, now) {
			return false
		}
		s.m.resends.WithLabelValues(reason).Inc()
		s.log.Debug("spool: bundle written again", "bundle", f.h.String(), "reason", reason, "sends", f.sends)
	}
	return true
}

// fill seals and writes the lane's new bundles while the window (two-way) and the bound allow.
func (s *Spool) fill(ctx context.Context, ls *laneOut, l outbox.Lane, now time.Time) {
	for range fillPerStep {
		if (!s.cfg.OneWay && len(ls.flights) >= s.cfg.Window) || ls.next >= l.LastSeq {
			return
		}
		if s.outBytes >= s.bundleRoom() {
			s.blocked = true
			return
		}
		out, err := s.r.Next(ctx, ls.name, ls.next, s.remoteOut)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("spool: seal the next bundle", "lane", ls.name, "after", ls.next, "err", err)
			}
			return
		}
		if out == nil {
			return
		}
		h := out.Header
		f := &flight{h: h, raw: out.Raw, size: len(out.Raw), name: Name{Node: s.rc.Node, Lane: h.Lane, First: h.FirstSeq, Last: h.LastSeq, ID: h.BundleID, Kind: KindBundle}.String()}
		ls.flights = append(ls.flights, f)
		ls.next = h.LastSeq
		if !s.writeBundle(f, out.Raw, now) {
			return
		}
	}
}

// retireOld (one-way) retires the lane's bundles first written RetireAfter ago or more, without
// confirmation: audited as bundle.retired before the rows go. It reports false when the lane
// must wait (audit trail or database).
func (s *Spool) retireOld(ctx context.Context, ls *laneOut, now time.Time) bool {
	n := 0
	for n < len(ls.flights) && !ls.flights[n].first.IsZero() && now.Sub(ls.flights[n].first) >= s.cfg.RetireAfter {
		n++
	}
	if n == 0 {
		return true
	}
	first, last := ls.flights[0], ls.flights[n-1]
	reason := fmt.Sprintf("one-way spool: not confirmed by the peer; %d bundle(s), sequences %d..%d, first written %s (%d writes of the oldest); retired %s after the first write (-spool-one-way-retire-after)",
		n, first.h.FirstSeq, last.h.LastSeq, first.first.Format(time.RFC3339), first.sends, s.cfg.RetireAfter)
	if err := s.r.Retire(ctx, ls.name, last.h.LastSeq, EventRetired, reason); err != nil {
		s.log.Error("spool: cannot retire aged bundles", "lane", ls.name, "err", err)
		return false
	}
	s.m.retired.Add(float64(n))
	s.log.Warn("spool: one-way bundles retired unconfirmed", "lane", ls.name, "first", first.h.FirstSeq, "last", last.h.LastSeq)
	s.acked(ls, last.h.LastSeq)
	return true
}

// confirm (one-way) retires lane up to hwm, which the peer's signed manifest says it committed.
func (s *Spool) confirm(ctx context.Context, lane string, hwm int64, manifestID string) bool {
	ls := s.lanes[lane]
	if ls == nil || hwm <= ls.acked {
		return true
	}
	reason := "one-way spool: confirmed by the peer's signed manifest " + manifestID
	if err := s.r.Retire(ctx, lane, hwm, audit.BundleAcknowledged, reason); err != nil {
		s.log.Error("spool: cannot retire confirmed bundles", "lane", lane, "err", err)
		return false
	}
	s.acked(ls, min(hwm, ls.next))
	return true
}

// setFull updates ferry_spool_full and says so in the log when it changes.
func (s *Spool) setFull() {
	if s.blocked == s.full {
		return
	}
	s.full = s.blocked
	if s.full {
		s.m.full.Set(1)
		s.log.Error("spool: the outgoing spool is full or cannot be written: no new bundles are written until the appliance takes files or the directory is writable again; nothing is dropped",
			"out", s.cfg.Out, "bytes", s.outBytes, "max_bytes", s.cfg.MaxBytes, "err", s.Err())
		return
	}
	s.m.full.Set(0)
	s.log.Info("spool: the outgoing spool has room again", "bytes", s.outBytes, "max_bytes", s.cfg.MaxBytes)
}

// sealManifest builds and seals the manifest: per sending lane up to listPerLane of the oldest
// bundles written and not acknowledged, fewer when that much would not fit in MaxManifestBytes
// (many busy lanes, one way: a sender with no way back keeps RetireAfter's worth of bundles). The
// lanes' acknowledged sequences and the receiving marks are always there; bundles left out are
// listed once older ones are retired.
func (s *Spool) sealManifest(id string, now time.Time) ([]byte, error) {
	for list := listPerLane; ; list /= 2 {
		m := Manifest{ManifestID: id, From: s.rc.Node, To: s.rc.Peer, At: now, OneWay: s.cfg.OneWay}
		for _, ls := range s.lanes {
			sl := SentLane{Lane: ls.name, Acked: ls.acked, Bundles: []Entry{}}
			for _, f := range ls.flights {
				if f.first.IsZero() || len(sl.Bundles) == list {
					continue
				}
				sl.Bundles = append(sl.Bundles, Entry{BundleID: f.h.BundleID, FirstSeq: f.h.FirstSeq, LastSeq: f.h.LastSeq, Written: f.last, SM3: f.sum})
			}
			m.Sent = append(m.Sent, sl)
		}
		for lane, hwm := range s.marks {
			m.Received = append(m.Received, Mark{Lane: lane, HWM: hwm})
		}
		raw, err := SealManifest(s.rc.Rand, m, s.rc.Keys.Signer)
		if !errors.Is(err, bundle.ErrLimit) || list == 0 {
			if short := list < listPerLane; err == nil && short != s.shortLists {
				s.shortLists = short
				if short {
					s.log.Warn("spool: manifests list fewer bundles of each lane than usual, to fit their size limit; later bundles are listed as older ones are retired",
						"lanes", len(s.lanes), "per_lane", list, "max_bytes", MaxManifestBytes)
				} else {
					s.log.Info("spool: manifests list up to the usual number of bundles of each lane again")
				}
			}
			return raw, err
		}
	}
}

// manifest writes a manifest when one is due: every ManifestInterval, and after a batch of
// bundles (at most once per Poll). It lists, per sending lane, the acknowledged sequence and up to
// listPerLane of the oldest bundles written and not acknowledged (sealManifest), and the
// receiving lanes' high-water marks. The one before it is removed from out/ if the appliance has
// not taken it.
func (s *Spool) manifest(now time.Time) {
	since := now.Sub(s.lastManifest)
	// since < 0: the clock was set back; waiting for it to pass the last manifest's time would
	// leave the peer without one for as long.
	if since >= 0 && since < s.cfg.ManifestInterval && !(s.batch && since >= s.cfg.Poll) {
		return
	}
	id, err := s.newID()
	if err != nil {
		s.log.Error("spool: manifest", "err", err)
		return
	}
	raw, err := s.sealManifest(id, now)
	if err != nil {
		s.log.Error("spool: seal manifest", "err", err)
		return
	}
	serial := s.nextSerial(now)
	name := Name{Node: s.rc.Node, Lane: laneManifest, First: serial, Last: serial, ID: id, Kind: KindManifest}.String()
	if !s.writeControlFile(name, s.manifestFile, raw) {
		s.setFull()
		return
	}
	s.manifestFile, s.lastManifest, s.batch = name, now, false
	s.manifests = append(s.manifests, sentManifest{id: id, at: now})
	if len(s.manifests) > 64 {
		s.manifests = s.manifests[1:]
	}
}
