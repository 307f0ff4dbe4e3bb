// Package spool is the ferry's transport for network gap appliances (网闸), which only copy
// files from a directory on one side to a directory on the other. Each ferry writes its bundles,
// acknowledgements, manifests and resend requests as files into its outgoing directory (out/)
// and reads the peer's from its incoming directory (in/); the appliance moves out/ of each side
// to in/ of the other. Bundles and acknowledgements are the signed (and, for bundles, encrypted)
// formats of package bundle, byte for byte as on the link, so their security does not depend on
// the appliance. Nothing here opens a connection: on this transport the DMZ ferry dials nothing
// and listens for nothing.
//
// # Directories and names
//
//	out/                  files for the appliance to take (regular files at the top only)
//	out/.tmp/             files being written; the appliance must skip dot names
//	in/                   files the appliance delivered; dot names are skipped
//
// A file is written to out/.tmp/, synced (fsync), renamed into out/ and out/ is synced: out/
// never holds a partial file of ours, and a file that was renamed survives a power cut. When a
// step fails (a full disk, a read-only directory) the temporary file is removed, nothing
// appears in out/ and the write is tried again at a later step.
//
// Names are NODE-LANE-FIRST-LAST-ID.EXT (see Name): .fpb bundles (the lane, its first and last
// sequence, the bundle ID), .fpa acknowledgements (the lane, the acknowledged sequence twice,
// the bundle answered or 32 zeros), .fpm manifests and .fpr resend requests ("manifest" or
// "resend", a serial number twice, the file's ID). Names serve people, the appliance and the
// sender's bookkeeping; the receiver goes by content alone (the magic, then the signature), so
// a file the appliance renamed is handled like any other, and a file whose name claims to be
// ours proves nothing.
//
// # Receiving
//
// The incoming directory is watched with inotify (golang.org/x/sys/unix, already in the module
// graph: two directories and a handful of events need no further dependency), and read every
// Poll regardless (inotify misses changes made by another host of a network file system, and it
// can overflow). Each file is read whole and verified:
//
//   - a bundle ("FPB1"): its signature, by the one allowed peer. When its turn has come (its
//     first sequence is at most the lane's high-water mark + 1) it goes through relay.Accept, the
//     same receive path as the link: full verification, inbox.Receive, audit, a signed
//     acknowledgement. A bundle seen before changes nothing and is acknowledged again. A bundle
//     that starts past the next sequence is held in in/ (ferry_spool_held_files) until the
//     bundles before it arrive; later files are kept meanwhile.
//   - an acknowledgement ("FPA1"): relay.AcceptAck, as on the link, which retires the outbox.
//   - a manifest ("FPM1") or resend request ("FPR1") of the peer: see below.
//
// A handled file is deleted from in/. A file that does not verify is left alone while the
// appliance may still be writing it: it is quarantined only once it has failed three looks and
// stayed unchanged (size and time) for Settle. Then bundles and files with no magic of ours go
// through relay.Accept, which refuses them, keeps them in the quarantine directory as
// <SM3 hex>.bundle and audits bundle.rejected with the reason; acknowledgements, manifests and
// requests are quarantined and audited (bundle.rejected) here. Nothing of such a file is applied,
// and it leaves in/ only after its record is written.
//
// # Sending
//
// Each lane's bundles are sealed by relay.Next (audited bundle.sent) and written as soon as the
// window allows (two-way: 64 bundles written and not acknowledged per lane) and the bound of
// out/ (MaxBytes) has room: bundles may fill seven eighths of it, the last eighth is kept for
// acknowledgements, manifests and requests, each of which replaces the one before it. At the
// bound the sender writes no new bundle, ferry_spool_full is 1 and the log says so; nothing is
// dropped, the outbox keeps the messages and the producer's backlog grows until the appliance
// takes files. Two-way, a written bundle's bytes are kept in memory (up to 64 MiB in all) so
// that a resend is the same file; beyond that, and in one-way mode, only its header is kept and
// relay.Reseal seals the same messages from the outbox again under the same bundle ID (a fresh
// key and signature).
//
// A bundle not acknowledged in ResendAfter is written again (two-way: only the lane's oldest,
// since the later ones are most likely waiting behind it at the peer; each further wait doubles,
// up to 8 × ResendAfter), unless its file is still in out/ because the appliance has not taken it.
// An acknowledgement retires the outbox up to its sequence and removes from out/ the files of the
// bundles it covers that are still there.
//
// # Manifests and resend requests
//
// Every ManifestInterval, and after each batch of bundles (at most once per Poll), each side
// writes a signed manifest: per sending lane the acknowledged sequence and the bundles written
// and not acknowledged (up to 1024, the oldest, fewer of each lane when so many would not fit in
// MaxManifestBytes: ID, sequences, when last written, SM3 of the file), and per receiving lane
// the high-water mark. The receiver of a manifest
//
//   - acknowledges again (a cumulative acknowledgement) a lane whose listed acknowledged sequence
//     is below its own high-water mark: the acknowledgement was lost;
//   - counts as missing each listed bundle past its high-water mark that it does not hold, when
//     the manifest was written at least ManifestInterval after the bundle: the appliance dropped
//     it (a bundle listed more recently may still be on its way). It audits bundle.missing once
//     per lane and first missing bundle, counts ferry_spool_missing_total, and (two-way) writes a
//     signed resend request naming the missing bundles and the manifest;
//   - one-way: takes the high-water marks as the peer's signed confirmation (below).
//
// A sender that receives a resend request writes the named bundles again at once, unless it has
// written them again since the manifest the request answers. Manifests older than the latest
// one handled are ignored; manifests and requests are never applied twice in a harmful way,
// since all they cause is an acknowledgement or a write given again.
//
// # Manifest and resend request format, version 1
//
// Both use the acknowledgement's layout and signature (package bundle): all integers big-endian,
//
//	offset   size  field
//	0        4     magic "FPM1" (manifest) or "FPR1" (resend request)
//	4        4     L, the length of the body
//	8        L     body: canonical JSON, below
//	8+L      rest  signature: SM2 (SM3, user ID 1234567812345678), ASN.1 DER, of bytes [0, 8+L)
//
// so that `L=$(u32 F 4); head -c $((8+L)) F > signed; tail -c +$((9+L)) F > sig` and the
// pkeyutl command of package bundle check one with OpenSSL. The body is the JSON object with
// exactly these members in this order, no white space, times in RFC 3339 UTC (Z, up to
// microseconds, trailing zeros dropped), lists never null, lanes in byte order, bundles by first
// sequence; a body is accepted only if re-encoding it gives the same bytes:
//
//	manifest: {"version":1,"manifest_id":"<32 hex>","from":"<node>","to":"<node>","at":"<time>",
//	 "one_way":false,"sent":[{"lane":"<lane>","acked":A,"bundles":[{"bundle_id":"<32 hex>",
//	 "first_seq":F,"last_seq":L,"written":"<time>","sm3":"<64 hex>"},...]},...],
//	 "received":[{"lane":"<lane>","hwm":H},...]}
//
//	request: {"version":1,"request_id":"<32 hex>","from":"<node>","to":"<node>","at":"<time>",
//	 "manifest_id":"<32 hex>","lanes":[{"lane":"<lane>","hwm":H,"missing":[{"bundle_id":"<32 hex>",
//	 "first_seq":F,"last_seq":L},...]},...]}
//
// A sent lane's bundles follow one another above acked; a request's missing bundles end above
// hwm, in order.
//
// # One-way mode
//
// With OneWay the appliance is taken to carry nothing back (a data diode), or at most the
// peer's manifests. Then:
//
//   - the receiver applies each bundle once (by sequence, and by message ID in the inbox) and
//     writes no acknowledgements and no resend requests; it still writes manifests;
//   - the sender writes each bundle again on a doubling schedule: at 0, ResendAfter, 3 ×, 7 ×,
//     15 × ResendAfter..., about log2(RetireAfter / ResendAfter) + 1 writes in all (12 with 30 s
//     and 24 h), with no window (the bound of out/ still applies);
//   - a bundle is retired (its outbox rows deleted) when a signed manifest of the peer shows the
//     lane committed past it (audited bundle.acknowledged, citing the manifest), or else
//     RetireAfter after its first write (audited bundle.retired, counted in
//     ferry_spool_retired_unconfirmed_total).
//
// What this guarantees: nothing is applied twice, nothing unverified is applied, the receiver
// applies in lane order and holds what comes early, and a message whose bundle arrives in any of
// its writes is delivered. What it cannot: without a way back the sender cannot know that a
// bundle arrived, so a message all of whose writes the appliance lost within RetireAfter is
// retired undelivered. That loss is not silent: the sender audits bundle.retired with the
// sequences, the receiver audits bundle.missing from the sender's manifests, and the lane stops at
// the gap, since the ferry never skips a sequence (later bundles are held, not applied out of
// order, and ferry_spool_held_files stays up). Going on needs an operator's decision (the lost
// messages' digests are in both audit trails; the business messages must be issued again). Set
// RetireAfter well above the longest outage of the appliance. A restart of the sender starts the
// schedule again: rows are kept longer, never shorter. Memory: the header of each unretired
// bundle (about 64 bytes per message).
//
// # Power cuts
//
// Every file is synced before its rename and out/ after it, so a file that appeared in out/
// survives; one whose rename had not happened is gone with .tmp/ (cleared at start) and is
// written again. The receiver commits a bundle to the database before it deletes the file, so a
// cut between the two makes it a duplicate next time (acknowledged again, nothing changed); an
// acknowledgement lost with the cut is given again at start (a cumulative acknowledgement of every
// lane) and on the peer's next manifest. The sender's in-memory state (what is written and not
// acknowledged) is rebuilt from the outbox: at start it removes its own files left in out/ and
// seals the unacknowledged rows afresh, under new bundle IDs; the receiver applies only what it
// lacks.
package spool
