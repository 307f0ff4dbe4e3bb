package main

import (
	"testing"

	"finepay/shared/envelope"
)

// The benchmark's messages are catalogue bills whose canonical envelope has exactly the size
// asked for, and they are spread over every lane.
func TestBillsHaveTheSizeAskedFor(t *testing.T) {
	for _, size := range []int{420, 512, 600} {
		envs, err := bills(300, size)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range envs {
			raw, err := e.Marshal()
			if err != nil || len(raw) != size || e.Check() != nil {
				t.Fatalf("bill %s: %d bytes (%v, check %v), want %d", e.ID, len(raw), err, e.Check(), size)
			}
		}
		jobs, err := laneBatches(envs, 8, 50)
		if err != nil {
			t.Fatal(err)
		}
		seen, total := map[string]bool{}, 0
		for _, j := range jobs {
			lane, _ := envelope.Lane(j[0].Type, j[0].Key, 8)
			for _, e := range j {
				if l, _ := envelope.Lane(e.Type, e.Key, 8); l != lane {
					t.Fatalf("a batch mixes lanes %s and %s", lane, l)
				}
			}
			seen[lane] = true
			total += len(j)
		}
		if len(seen) != 8 || total != 300 {
			t.Fatalf("batches cover %d lanes and %d messages", len(seen), total)
		}
	}
}
