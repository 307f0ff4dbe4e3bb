package merkle

import (
	"bytes"
	"fmt"
	"slices"
)

// InclusionProof returns the audit path of the leaf at index in the tree of size leaves (RFC
// 6962 §2.1.1 PATH(index, D[size])): the heads of the siblings on the way from the leaf to the
// root, deepest first.
func InclusionProof(index, size uint64, subtree SubtreeFunc) ([][]byte, error) {
	if index >= size {
		return nil, fmt.Errorf("%w: leaf %d of a tree of %d", ErrRange, index, size)
	}
	var path [][]byte
	lo, hi := uint64(0), size
	for hi-lo > 1 {
		k := split(hi - lo)
		var s []byte
		var err error
		if index < lo+k {
			s, err = subtree(lo+k, hi)
			hi = lo + k
		} else {
			s, err = subtree(lo, lo+k)
			lo += k
		}
		if err != nil {
			return nil, err
		}
		path = append(path, s)
	}
	slices.Reverse(path)
	return path, nil
}

// VerifyInclusion checks that leafHash is the leaf at index of the tree of size leaves whose
// head is root, given the audit path InclusionProof made.
func VerifyInclusion(h Hash, index, size uint64, leafHash []byte, path [][]byte, root []byte) error {
	if index >= size {
		return fmt.Errorf("%w: leaf %d of a tree of %d", ErrRange, index, size)
	}
	// right[i]: on level i from the top, the leaf lies in the right subtree.
	var right []bool
	lo, hi := uint64(0), size
	for hi-lo > 1 {
		k := split(hi - lo)
		if index < lo+k {
			right, hi = append(right, false), lo+k
		} else {
			right, lo = append(right, true), lo+k
		}
	}
	if len(path) != len(right) {
		return fmt.Errorf("%w: inclusion path of %d hashes, leaf %d of %d needs %d", ErrProof, len(path), index, size, len(right))
	}
	r := leafHash
	for i, p := range path {
		if right[len(right)-1-i] {
			r = h.NodeHash(p, r)
		} else {
			r = h.NodeHash(r, p)
		}
	}
	if !bytes.Equal(r, root) {
		return fmt.Errorf("%w: leaf %d is not in the tree of %d with that head", ErrProof, index, size)
	}
	return nil
}

// ConsistencyProof returns the proof that the tree of m leaves is a prefix of the tree of n
// leaves (RFC 6962 §2.1.2 PROOF(m, D[n])), deepest first. It is empty when m is 0 or n.
func ConsistencyProof(m, n uint64, subtree SubtreeFunc) ([][]byte, error) {
	if m > n {
		return nil, fmt.Errorf("%w: consistency of %d with %d", ErrRange, m, n)
	}
	if m == 0 || m == n {
		return nil, nil
	}
	var proof [][]byte
	lo, hi, whole := uint64(0), n, true // whole: SUBPROOF's b, the old tree is D[lo:m] itself
	for m != hi {
		k := split(hi - lo)
		var s []byte
		var err error
		if m-lo <= k {
			s, err = subtree(lo+k, hi) // new leaves only
			hi = lo + k
		} else {
			s, err = subtree(lo, lo+k) // old leaves only
			lo, whole = lo+k, false
		}
		if err != nil {
			return nil, err
		}
		proof = append(proof, s)
	}
	if !whole {
		s, err := subtree(lo, hi)
		if err != nil {
			return nil, err
		}
		proof = append(proof, s)
	}
	slices.Reverse(proof)
	return proof, nil
}

// VerifyConsistency checks that the tree of m leaves with head oldRoot is a prefix of the tree
// of n leaves with head newRoot, given the proof ConsistencyProof made.
//
// It retraces the proof's recursion: below the point where the old tree is a whole subtree of
// the new one, both heads are that subtree's; going up, a sibling of old leaves (to the left)
// joins both heads, a sibling of new leaves (to the right) joins only the new head.
func VerifyConsistency(h Hash, m, n uint64, oldRoot, newRoot []byte, proof [][]byte) error {
	switch {
	case m > n:
		return fmt.Errorf("%w: consistency of %d with %d", ErrRange, m, n)
	case m == 0 || m == n:
		want := newRoot
		if m == 0 {
			want = h.EmptyRoot()
		}
		if len(proof) != 0 || !bytes.Equal(oldRoot, want) {
			return fmt.Errorf("%w: trees of %d and %d", ErrProof, m, n)
		}
		return nil
	}
	var oldLeft []bool // per level from the top: the sibling holds old leaves (and is on the left)
	lo, hi, whole := uint64(0), n, true
	for m != hi {
		k := split(hi - lo)
		if m-lo <= k {
			oldLeft, hi = append(oldLeft, false), lo+k
		} else {
			oldLeft, lo, whole = append(oldLeft, true), lo+k, false
		}
	}
	need := len(oldLeft)
	if !whole {
		need++
	}
	if len(proof) != need {
		return fmt.Errorf("%w: consistency proof of %d hashes, %d to %d needs %d", ErrProof, len(proof), m, n, need)
	}
	oldH, newH := oldRoot, oldRoot
	if !whole {
		oldH, newH, proof = proof[0], proof[0], proof[1:]
	}
	for i, p := range proof {
		if oldLeft[len(oldLeft)-1-i] {
			oldH, newH = h.NodeHash(p, oldH), h.NodeHash(p, newH)
		} else {
			newH = h.NodeHash(newH, p)
		}
	}
	if !bytes.Equal(oldH, oldRoot) || !bytes.Equal(newH, newRoot) {
		return fmt.Errorf("%w: the tree of %d is not a prefix of the tree of %d with those heads", ErrProof, m, n)
	}
	return nil
}
