package spool

import (
	"errors"
	"testing"
)

func TestParseName(t *testing.T) {
	t.Parallel()
	id := "0123456789abcdef0123456789abcdef"
	for _, tc := range []struct {
		name string
		in   string
		want Name
		fail bool
	}{
		{name: "bundle", in: "ferry-intranet-to-gateway.3-17-32-" + id + ".fpb",
			want: Name{Node: "ferry-intranet", Lane: "to-gateway.3", First: 17, Last: 32, ID: id, Kind: KindBundle}},
		{name: "bundle/one-message", in: "ferry-dmz-to-core.0-5-5-" + id + ".fpb",
			want: Name{Node: "ferry-dmz", Lane: "to-core.0", First: 5, Last: 5, ID: id, Kind: KindBundle}},
		{name: "ack", in: "ferry-dmz-to-gateway.0-40-40-" + id + ".fpa",
			want: Name{Node: "ferry-dmz", Lane: "to-gateway.0", First: 40, Last: 40, ID: id, Kind: KindAck}},
		{name: "ack/cumulative", in: "ferry-dmz-to-gateway.0-40-40-" + noBundle + ".fpa",
			want: Name{Node: "ferry-dmz", Lane: "to-gateway.0", First: 40, Last: 40, ID: noBundle, Kind: KindAck}},
		{name: "manifest", in: "ferry-dmz-manifest-1740816000000-1740816000000-" + id + ".fpm",
			want: Name{Node: "ferry-dmz", Lane: "manifest", First: 1740816000000, Last: 1740816000000, ID: id, Kind: KindManifest}},
		{name: "request", in: "a-resend-7-7-" + id + ".fpr",
			want: Name{Node: "a", Lane: "resend", First: 7, Last: 7, ID: id, Kind: KindRequest}},
		{name: "node-with-dots", in: "ferry.gw-1.example-to-core.12-1-2-" + id + ".fpb",
			want: Name{Node: "ferry.gw-1.example", Lane: "to-core.12", First: 1, Last: 2, ID: id, Kind: KindBundle}},
		{name: "fail/empty", in: "", fail: true},
		{name: "fail/extension", in: "ferry-dmz-to-core.0-1-2-" + id + ".bin", fail: true},
		{name: "fail/upper-hex", in: "ferry-dmz-to-core.0-1-2-0123456789ABCDEF0123456789abcdef.fpb", fail: true},
		{name: "fail/short-id", in: "ferry-dmz-to-core.0-1-2-0123.fpb", fail: true},
		{name: "fail/first-after-last", in: "ferry-dmz-to-core.0-3-2-" + id + ".fpb", fail: true},
		{name: "fail/seq-zero", in: "ferry-dmz-to-core.0-0-2-" + id + ".fpb", fail: true},
		{name: "fail/leading-zero", in: "ferry-dmz-to-core.0-01-2-" + id + ".fpb", fail: true},
		{name: "fail/overflow", in: "ferry-dmz-to-core.0-1-9999999999999999999-" + id + ".fpb", fail: true},
		{name: "fail/bad-lane", in: "ferry-dmz-to-nowhere.0-1-2-" + id + ".fpb", fail: true},
		{name: "fail/ack-range", in: "ferry-dmz-to-core.0-1-2-" + id + ".fpa", fail: true},
		{name: "fail/manifest-as-bundle", in: "ferry-dmz-manifest-1-1-" + id + ".fpb", fail: true},
		{name: "fail/bundle-as-manifest", in: "ferry-dmz-to-core.0-1-1-" + id + ".fpm", fail: true},
		{name: "fail/request-named-manifest", in: "ferry-dmz-manifest-1-1-" + id + ".fpr", fail: true},
		{name: "fail/upper-node", in: "Ferry-to-core.0-1-2-" + id + ".fpb", fail: true},
		{name: "fail/path", in: "../ferry-to-core.0-1-2-" + id + ".fpb", fail: true},
		{name: "fail/hidden", in: ".ferry-to-core.0-1-2-" + id + ".fpb", fail: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseName(tc.in)
			if tc.fail {
				if err == nil || !errors.Is(err, ErrName) {
					t.Fatalf("ParseName(%q) = %+v, %v; want ErrName", tc.in, got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseName(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			}
			if got.String() != tc.in {
				t.Fatalf("String() = %q, want %q", got.String(), tc.in)
			}
		})
	}
}
