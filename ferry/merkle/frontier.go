package merkle

import (
	"bytes"
	"fmt"
	"math/bits"
)

// Subtree is a perfect subtree of a log: the 2^Level leaves from Start, Start a multiple of
// 2^Level. Every perfect subtree is a node of every tree that contains its leaves.
type Subtree struct {
	Start uint64
	Level uint
}

// End is one past the subtree's last leaf.
func (s Subtree) End() uint64 { return s.Start + 1<<s.Level }

// Decompose returns the fewest perfect subtrees that cover the leaves [a, b), left to right:
// at each step the largest that starts at the next leaf and fits. Decompose(0, n) has one
// subtree per set bit of n, largest first: the shape of a Frontier of size n. Appending the
// heads of Decompose(a, b) to a Frontier of size a gives the Frontier of size b.
func Decompose(a, b uint64) []Subtree {
	var out []Subtree
	for a < b {
		level := uint(bits.Len64(b-a) - 1)
		if a != 0 {
			level = min(level, uint(bits.TrailingZeros64(a)))
		}
		out = append(out, Subtree{Start: a, Level: level})
		a += 1 << level
	}
	return out
}

// Frontier is a log of Size leaves reduced to the heads of Decompose(0, Size): one perfect
// subtree per set bit of the size, largest (leftmost) first. It extends the log leaf by leaf and
// gives its tree head, with memory logarithmic in the size.
type Frontier struct {
	h     Hash
	size  uint64
	nodes [][]byte
}

// NewFrontier returns the frontier of an empty log.
func NewFrontier(h Hash) *Frontier { return &Frontier{h: h} }

// FrontierOf returns the frontier of a log of size leaves whose perfect subtrees (as Decompose(0,
// size) lists them) have the heads nodes.
func FrontierOf(h Hash, size uint64, nodes [][]byte) (*Frontier, error) {
	if !h.Valid() {
		return nil, fmt.Errorf("%w %d", ErrUnknownHash, h)
	}
	if len(nodes) != bits.OnesCount64(size) {
		return nil, fmt.Errorf("%w: %d frontier hashes for size %d (want %d)", ErrRange, len(nodes), size, bits.OnesCount64(size))
	}
	f := &Frontier{h: h, size: size, nodes: make([][]byte, len(nodes))}
	for i, n := range nodes {
		if len(n) != Size {
			return nil, fmt.Errorf("%w: frontier hash of %d bytes", ErrRange, len(n))
		}
		f.nodes[i] = bytes.Clone(n)
	}
	return f, nil
}

// UnmarshalFrontier decodes Marshal's output for a log of size leaves.
func UnmarshalFrontier(h Hash, size uint64, b []byte) (*Frontier, error) {
	if len(b)%Size != 0 {
		return nil, fmt.Errorf("%w: frontier of %d bytes", ErrRange, len(b))
	}
	nodes := make([][]byte, 0, len(b)/Size)
	for i := 0; i < len(b); i += Size {
		nodes = append(nodes, b[i:i+Size])
	}
	return FrontierOf(h, size, nodes)
}

// Marshal returns the frontier's hashes concatenated, largest subtree first.
func (f *Frontier) Marshal() []byte { return bytes.Join(f.nodes, nil) }

// Hash is the frontier's hash function.
func (f *Frontier) Hash() Hash { return f.h }

// Size is the number of leaves.
func (f *Frontier) Size() uint64 { return f.size }

// Hashes returns a copy of the heads of the perfect subtrees, largest first.
func (f *Frontier) Hashes() [][]byte {
	out := make([][]byte, len(f.nodes))
	for i, n := range f.nodes {
		out[i] = bytes.Clone(n)
	}
	return out
}

// Clone returns an independent copy.
func (f *Frontier) Clone() *Frontier {
	c := *f
	c.nodes = f.Hashes()
	return &c
}

// Append adds a leaf by its leaf hash.
func (f *Frontier) Append(leafHash []byte) {
	if err := f.AppendSubtree(0, leafHash); err != nil {
		panic(err) // a single leaf always fits
	}
}

// AppendSubtree adds a perfect subtree of 2^level leaves by its head. The size must be a
// multiple of 2^level (the subtree must start where perfect subtrees of its height start).
func (f *Frontier) AppendSubtree(level uint, head []byte) error {
	if level >= 64 || f.size&(1<<level-1) != 0 {
		return fmt.Errorf("%w: a subtree of 2^%d leaves cannot follow %d leaves", ErrRange, level, f.size)
	}
	if len(head) != Size {
		return fmt.Errorf("%w: subtree head of %d bytes", ErrRange, len(head))
	}
	if f.size+1<<level < f.size {
		return fmt.Errorf("%w: log size overflows", ErrRange)
	}
	h := bytes.Clone(head)
	for l := level; f.size&(1<<l) != 0; l++ {
		left := f.nodes[len(f.nodes)-1]
		f.nodes = f.nodes[:len(f.nodes)-1]
		h = f.h.NodeHash(left, h)
	}
	f.nodes = append(f.nodes, h)
	f.size += 1 << level
	return nil
}

// Root returns the tree head MTH of the log's leaves.
func (f *Frontier) Root() []byte {
	if f.size == 0 {
		return f.h.EmptyRoot()
	}
	r := f.nodes[len(f.nodes)-1]
	for i := len(f.nodes) - 2; i >= 0; i-- {
		r = f.h.NodeHash(f.nodes[i], r)
	}
	return bytes.Clone(r)
}
