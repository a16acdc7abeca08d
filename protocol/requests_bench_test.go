package protocol

import "testing"

// BenchmarkRequestsFullTable: what one write with a request ID costs the
// table of a hot key, full: the lookup of its ID and the splice of its
// record, on the encoding and through the index; and what a peer's table
// costs to check, and to decode.
func BenchmarkRequestsFullTable(b *testing.B) {
	tab := fullTable(1 << 20)
	for i := range tab.Records {
		tab.Records[i].ID = string(make([]byte, 16)) + tab.Records[i].ID // 16-byte IDs like kv's
	}
	enc := EncodeRequests(tab)
	add := RequestRecord{ID: "0123456789abcdef", Outcome: RequestApplied, Version: 1, IssuedMillis: 1 << 21, Value: []byte("12345")}
	b.ReportAllocs()
	b.Run("find", func(b *testing.B) {
		for range b.N {
			if _, ok, _, _ := FindRequest(enc, add.ID); ok {
				b.Fatal("found")
			}
		}
	})
	b.Run("splice", func(b *testing.B) {
		for range b.N {
			if _, err := spliceRequests(enc, 0, add); err != nil {
				b.Fatal(err)
			}
		}
	})
	x, err := indexRequests(enc)
	if err != nil {
		b.Fatal(err)
	}
	indexed := State{Requests: enc, index: x}
	b.Run("find-indexed", func(b *testing.B) {
		for range b.N {
			if _, ok, _, _ := findRequest(indexed, add.ID); ok {
				b.Fatal("found")
			}
		}
	})
	b.Run("splice-indexed", func(b *testing.B) {
		for range b.N {
			spliceIndexed(x, 0, add)
		}
	})
	b.Run("validate", func(b *testing.B) {
		for range b.N {
			if _, err := ValidateRequests(enc); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode", func(b *testing.B) {
		for range b.N {
			if _, err := DecodeRequests(enc); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Logf("%d bytes", len(enc))
}
