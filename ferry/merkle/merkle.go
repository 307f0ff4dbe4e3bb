// Package merkle is the Merkle tree of the ferry's tamper-evident audit log, in the shape of
// RFC 6962 §2.1 (and its successor RFC 9162 §2.1): a log of n leaves d[0..n) has the tree head
//
//	MTH({})      = H()
//	MTH({d0})    = H(0x00 ‖ d0)                                   the leaf hash
//	MTH(D[n])    = H(0x01 ‖ MTH(D[0:k]) ‖ MTH(D[k:n]))            n > 1, k the largest power of two < n
//
// with H selectable: SM3 (the default, GB/T 32905) or SHA-256. The prefixes 0x00 and 0x01 keep a
// leaf from ever being taken for an interior node.
//
// Besides the tree head the package makes and checks inclusion proofs (RFC 6962 §2.1.1: the
// audit path of one leaf) and consistency proofs (§2.1.2: that the tree of size m is a prefix of
// the tree of size n), and keeps a Frontier: the roots of the perfect subtrees a log of a given
// size decomposes into, which is all one needs to extend the log and compute its head without
// reading the old leaves again.
//
// Proofs are built from a SubtreeFunc that returns MTH(D[a:b]) for the subranges a proof needs,
// so that the leaves can stay in a database and be read range by range.
//
// The code follows the RFC's definitions; it is not derived from another implementation.
package merkle

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/bits"

	"finepay/shared/gm"
)

// Hash is the hash function of a tree.
type Hash uint8

// The hash functions a tree may use.
const (
	SM3    Hash = iota + 1 // GB/T 32905, the default
	SHA256                 // FIPS 180-4
)

// Size is the digest length of both hash functions, in bytes.
const Size = 32

// Prefixes of RFC 6962 §2.1.
const (
	LeafPrefix = 0x00
	NodePrefix = 0x01
)

// Errors.
var (
	// ErrUnknownHash: a hash name other than "sm3" or "sha256".
	ErrUnknownHash = errors.New("merkle: unknown hash")
	// ErrProof: a proof does not verify.
	ErrProof = errors.New("merkle: proof does not verify")
	// ErrRange: sizes or indices out of range.
	ErrRange = errors.New("merkle: out of range")
)

// ParseHash returns the hash named "sm3" or "sha256".
func ParseHash(name string) (Hash, error) {
	switch name {
	case "sm3":
		return SM3, nil
	case "sha256":
		return SHA256, nil
	}
	return 0, fmt.Errorf("%w %q (want sm3 or sha256)", ErrUnknownHash, name)
}

// String is the hash's name as written in checkpoints: "sm3" or "sha256".
func (h Hash) String() string {
	switch h {
	case SM3:
		return "sm3"
	case SHA256:
		return "sha256"
	}
	return fmt.Sprintf("hash(%d)", uint8(h))
}

// Valid reports whether h is a known hash.
func (h Hash) Valid() bool { return h == SM3 || h == SHA256 }

// Sum returns H(parts[0] ‖ parts[1] ‖ ...).
func (h Hash) Sum(parts ...[]byte) []byte {
	switch h {
	case SM3:
		d := gm.SM3(bytes.Join(parts, nil))
		return d[:]
	case SHA256:
		s := sha256.New()
		for _, p := range parts {
			s.Write(p)
		}
		return s.Sum(nil)
	}
	panic("merkle: invalid hash " + h.String())
}

// LeafHash is H(0x00 ‖ data), the hash of a leaf whose data is data.
func (h Hash) LeafHash(data []byte) []byte { return h.Sum([]byte{LeafPrefix}, data) }

// NodeHash is H(0x01 ‖ left ‖ right), the hash of an interior node.
func (h Hash) NodeHash(left, right []byte) []byte { return h.Sum([]byte{NodePrefix}, left, right) }

// EmptyRoot is MTH({}) = H(), the head of an empty log.
func (h Hash) EmptyRoot() []byte { return h.Sum() }

// split is the largest power of two smaller than n (n > 1).
func split(n uint64) uint64 { return 1 << (bits.Len64(n-1) - 1) }

// Root computes MTH of the leaf hashes directly from the definition. It suits small trees and
// tests; a Frontier computes the same head incrementally.
func Root(h Hash, leaves [][]byte) []byte {
	switch len(leaves) {
	case 0:
		return h.EmptyRoot()
	case 1:
		return leaves[0]
	}
	k := split(uint64(len(leaves)))
	return h.NodeHash(Root(h, leaves[:k]), Root(h, leaves[k:]))
}

// SubtreeFunc returns MTH(D[a:b]), the head of the leaves a to b-1 (0 ≤ a < b).
type SubtreeFunc func(a, b uint64) ([]byte, error)

// LeavesSubtree is a SubtreeFunc over leaf hashes held in memory.
func LeavesSubtree(h Hash, leaves [][]byte) SubtreeFunc {
	return func(a, b uint64) ([]byte, error) {
		if a >= b || b > uint64(len(leaves)) {
			return nil, fmt.Errorf("%w: subtree [%d, %d) of %d leaves", ErrRange, a, b, len(leaves))
		}
		return Root(h, leaves[a:b]), nil
	}
}
