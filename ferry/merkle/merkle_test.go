package merkle_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"testing"

	"finepay/ferry/merkle"
	"finepay/shared/gm"
)

// The leaves of the RFC 6962 test vectors used by the Certificate Transparency projects.
var ctLeaves = [][]byte{
	{}, {0x00}, {0x10}, {0x20, 0x21}, {0x30, 0x31}, {0x40, 0x41, 0x42, 0x43},
	{0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57},
	{0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d, 0x6e, 0x6f},
}

// Tree heads of the first n CT leaves with SHA-256 (checked with an independent Python
// implementation of RFC 6962 §2.1 as well).
var ctRoots = []string{
	"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
	"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
	"aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
	"d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
	"4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
	"76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
	"ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
	"5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}

func leafHashes(h merkle.Hash, data [][]byte) [][]byte {
	out := make([][]byte, len(data))
	for i, d := range data {
		out[i] = h.LeafHash(d)
	}
	return out
}

func unhex(t *testing.T, s ...string) [][]byte {
	t.Helper()
	out := make([][]byte, len(s))
	for i, x := range s {
		b, err := hex.DecodeString(x)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = b
	}
	return out
}

func TestCTVectorsSHA256(t *testing.T) {
	t.Parallel()
	leaves := leafHashes(merkle.SHA256, ctLeaves)
	f := merkle.NewFrontier(merkle.SHA256)
	for n := 1; n <= len(ctLeaves); n++ {
		f.Append(leaves[n-1])
		for name, got := range map[string][]byte{"Root": merkle.Root(merkle.SHA256, leaves[:n]), "Frontier": f.Root()} {
			if hex.EncodeToString(got) != ctRoots[n-1] {
				t.Errorf("%s of %d leaves = %x, want %s", name, n, got, ctRoots[n-1])
			}
		}
	}
	sub := merkle.LeavesSubtree(merkle.SHA256, leaves)
	for _, tc := range []struct {
		m, n uint64
		want []string
	}{
		{1, 8, []string{"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7", "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e", "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"}},
		{6, 8, []string{"0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a", "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0", "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
		{2, 5, []string{"5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e", "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"}},
		{3, 7, []string{"0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7", "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7", "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125", "837dbb152e9b079010717e84e865da4ebc0fa198a806d59d31bf15accef22d0e"}},
		{4, 8, []string{"6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"}},
	} {
		got, err := merkle.ConsistencyProof(tc.m, tc.n, sub)
		if err != nil || !equalAll(got, unhex(t, tc.want...)) {
			t.Errorf("consistency %d→%d = %x (%v)", tc.m, tc.n, got, err)
		}
		old, cur := unhex(t, ctRoots[tc.m-1], ctRoots[tc.n-1])[0], unhex(t, ctRoots[tc.n-1])[0]
		if err := merkle.VerifyConsistency(merkle.SHA256, tc.m, tc.n, old, cur, got); err != nil {
			t.Errorf("verify %d→%d: %v", tc.m, tc.n, err)
		}
	}
	for _, tc := range []struct {
		i, n uint64
		want []string
	}{
		{0, 8, []string{"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7", "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e", "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"}},
		{5, 8, []string{"bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b", "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0", "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
		{2, 3, []string{"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"}},
		{4, 7, []string{"4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658", "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f", "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
	} {
		got, err := merkle.InclusionProof(tc.i, tc.n, sub)
		if err != nil || !equalAll(got, unhex(t, tc.want...)) {
			t.Errorf("inclusion %d of %d = %x (%v)", tc.i, tc.n, got, err)
		}
		if err := merkle.VerifyInclusion(merkle.SHA256, tc.i, tc.n, leaves[tc.i], got, unhex(t, ctRoots[tc.n-1])[0]); err != nil {
			t.Errorf("verify inclusion %d of %d: %v", tc.i, tc.n, err)
		}
	}
}

func equalAll(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// Small trees written out by hand from the definition, with SM3.
func TestHandComputedSM3(t *testing.T) {
	t.Parallel()
	sm3 := func(b ...[]byte) []byte { d := gm.SM3(bytes.Join(b, nil)); return d[:] }
	leaf := func(s string) []byte { return sm3([]byte{0}, []byte(s)) }
	node := func(l, r []byte) []byte { return sm3([]byte{1}, l, r) }
	a, b, c, d, e := leaf("a"), leaf("b"), leaf("c"), leaf("d"), leaf("e")
	for _, tc := range []struct {
		data string
		want []byte
	}{
		{"", sm3()},
		{"a", a},
		{"ab", node(a, b)},
		{"abc", node(node(a, b), c)},
		{"abcd", node(node(a, b), node(c, d))},
		{"abcde", node(node(node(a, b), node(c, d)), e)},
	} {
		var data [][]byte
		for _, ch := range tc.data {
			data = append(data, []byte(string(ch)))
		}
		leaves := leafHashes(merkle.SM3, data)
		f := merkle.NewFrontier(merkle.SM3)
		for _, l := range leaves {
			f.Append(l)
		}
		if got := merkle.Root(merkle.SM3, leaves); !bytes.Equal(got, tc.want) {
			t.Errorf("Root(%q) = %x, want %x", tc.data, got, tc.want)
		}
		if got := f.Root(); !bytes.Equal(got, tc.want) {
			t.Errorf("Frontier(%q) = %x, want %x", tc.data, got, tc.want)
		}
	}
	// Leaf c of abcde: siblings d, then ab, then e.
	leaves := []([]byte){a, b, c, d, e}
	path, err := merkle.InclusionProof(2, 5, merkle.LeavesSubtree(merkle.SM3, leaves))
	if err != nil || !equalAll(path, [][]byte{d, node(a, b), e}) {
		t.Fatalf("path of c in abcde = %x (%v)", path, err)
	}
	// abc within abcde: c, d, ab, e (RFC 6962 §2.1.3's example shape).
	proof, err := merkle.ConsistencyProof(3, 5, merkle.LeavesSubtree(merkle.SM3, leaves))
	if err != nil || !equalAll(proof, [][]byte{c, d, node(a, b), e}) {
		t.Fatalf("consistency abc→abcde = %x (%v)", proof, err)
	}
	if sha := merkle.SHA256.LeafHash([]byte("a")); !bytes.Equal(sha, sha256Sum([]byte{0}, []byte("a"))) {
		t.Fatal("SHA-256 leaf hash")
	}
}

func sha256Sum(parts ...[]byte) []byte {
	s := sha256.Sum256(bytes.Join(parts, nil))
	return s[:]
}

func randomLeaves(r *rand.Rand, h merkle.Hash, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		b := make([]byte, 1+r.IntN(40))
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		out[i] = h.LeafHash(b)
	}
	return out
}

// Every consistency proof between sizes m ≤ n verifies; a changed leaf or a changed proof
// hash breaks it; so for inclusion proofs.
func TestProofProperties(t *testing.T) {
	t.Parallel()
	for _, h := range []merkle.Hash{merkle.SM3, merkle.SHA256} {
		t.Run(h.String(), func(t *testing.T) {
			t.Parallel()
			r := rand.New(rand.NewPCG(1, uint64(h)))
			const max = 70
			leaves := randomLeaves(r, h, max)
			sub := merkle.LeavesSubtree(h, leaves)
			roots := make([][]byte, max+1)
			for n := 0; n <= max; n++ {
				roots[n] = merkle.Root(h, leaves[:n])
			}
			for n := uint64(1); n <= max; n++ {
				for m := uint64(0); m <= n; m++ {
					proof, err := merkle.ConsistencyProof(m, n, sub)
					if err != nil {
						t.Fatal(err)
					}
					if err := merkle.VerifyConsistency(h, m, n, roots[m], roots[n], proof); err != nil {
						t.Fatalf("%d→%d: %v", m, n, err)
					}
					if m == 0 {
						continue
					}
					// A changed old leaf changes the old head: the proof no longer joins them.
					changed := append([][]byte(nil), leaves[:m]...)
					i := r.IntN(int(m))
					changed[i] = h.LeafHash([]byte(fmt.Sprint("changed", i)))
					if err := merkle.VerifyConsistency(h, m, n, merkle.Root(h, changed), roots[n], proof); err == nil {
						t.Fatalf("%d→%d verified with leaf %d changed", m, n, i)
					}
					if m < n {
						bad := cloneAll(proof)
						j := r.IntN(len(bad))
						bad[j][r.IntN(merkle.Size)] ^= 1
						if err := merkle.VerifyConsistency(h, m, n, roots[m], roots[n], bad); err == nil {
							t.Fatalf("%d→%d verified with proof hash %d changed", m, n, j)
						}
						if err := merkle.VerifyConsistency(h, m, n, roots[m], roots[n], proof[:len(proof)-1]); err == nil {
							t.Fatalf("%d→%d verified a short proof", m, n)
						}
					}
				}
				for i := uint64(0); i < n; i++ {
					path, err := merkle.InclusionProof(i, n, sub)
					if err != nil {
						t.Fatal(err)
					}
					if err := merkle.VerifyInclusion(h, i, n, leaves[i], path, roots[n]); err != nil {
						t.Fatalf("leaf %d of %d: %v", i, n, err)
					}
					if err := merkle.VerifyInclusion(h, i, n, h.LeafHash([]byte("other")), path, roots[n]); err == nil {
						t.Fatalf("leaf %d of %d: another leaf verified", i, n)
					}
					if n > 1 {
						other := (i + 1) % n
						if err := merkle.VerifyInclusion(h, other, n, leaves[i], path, roots[n]); err == nil && !bytes.Equal(leaves[i], leaves[other]) {
							t.Fatalf("leaf %d of %d verified at index %d", i, n, other)
						}
					}
				}
			}
		})
	}
}

func cloneAll(in [][]byte) [][]byte {
	out := make([][]byte, len(in))
	for i, b := range in {
		out[i] = bytes.Clone(b)
	}
	return out
}

// Frontiers built leaf by leaf, from subtrees (Decompose) and from their encoding agree with
// Root.
func TestFrontier(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(7, 7))
	h := merkle.SM3
	leaves := randomLeaves(r, h, 300)
	sub := merkle.LeavesSubtree(h, leaves)
	f := merkle.NewFrontier(h)
	if !bytes.Equal(f.Root(), h.EmptyRoot()) {
		t.Fatal("empty root")
	}
	for n := 1; n <= len(leaves); n++ {
		f.Append(leaves[n-1])
		want := merkle.Root(h, leaves[:n])
		if !bytes.Equal(f.Root(), want) {
			t.Fatalf("frontier of %d", n)
		}
		back, err := merkle.UnmarshalFrontier(h, uint64(n), f.Marshal())
		if err != nil || !bytes.Equal(back.Root(), want) {
			t.Fatalf("frontier of %d after encoding: %v", n, err)
		}
	}
	// Split anywhere: a prefix frontier plus the subtrees of the rest gives the same head.
	for range 200 {
		n := uint64(1 + r.IntN(len(leaves)))
		a := uint64(r.IntN(int(n) + 1))
		pre := merkle.NewFrontier(h)
		for _, s := range merkle.Decompose(0, a) {
			head, err := sub(s.Start, s.End())
			if err != nil {
				t.Fatal(err)
			}
			if err := pre.AppendSubtree(s.Level, head); err != nil {
				t.Fatal(err)
			}
		}
		for _, s := range merkle.Decompose(a, n) {
			head, err := sub(s.Start, s.End())
			if err != nil {
				t.Fatal(err)
			}
			if err := pre.AppendSubtree(s.Level, head); err != nil {
				t.Fatalf("[%d,%d) after %d: %v", s.Start, s.End(), a, err)
			}
		}
		if pre.Size() != n || !bytes.Equal(pre.Root(), merkle.Root(h, leaves[:n])) {
			t.Fatalf("split at %d of %d", a, n)
		}
	}
	if err := merkle.NewFrontier(h).AppendSubtree(1, leaves[0]); err != nil {
		t.Fatal("a pair at 0 must fit")
	}
	g := merkle.NewFrontier(h)
	g.Append(leaves[0])
	if err := g.AppendSubtree(1, leaves[1]); err == nil {
		t.Fatal("a pair at 1 accepted")
	}
	if _, err := merkle.UnmarshalFrontier(h, 3, leaves[0]); err == nil {
		t.Fatal("one hash accepted for size 3")
	}
}

func TestParseHash(t *testing.T) {
	t.Parallel()
	for _, h := range []merkle.Hash{merkle.SM3, merkle.SHA256} {
		if got, err := merkle.ParseHash(h.String()); err != nil || got != h {
			t.Errorf("ParseHash(%s) = %v, %v", h, got, err)
		}
	}
	if _, err := merkle.ParseHash("md5"); err == nil {
		t.Error("md5 accepted")
	}
}
