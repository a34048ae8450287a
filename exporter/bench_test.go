package exporter

import (
	"context"
	"testing"

	"github.com/rs/zerolog"
)

// BenchmarkSource reads the scenario logs of a real Dovecot 2.3 (220 lines,
// 164 events of ours, two of them split) and reports the cost per event.
func BenchmarkSource(b *testing.B) {
	for _, tc := range []struct {
		name string
		enc  Encoding
	}{{"dovecot-2.3-json.log", JSON}, {"dovecot-2.3-tabtext.log", TabText}} {
		b.Run(tc.name, func(b *testing.B) {
			data := readTestdata(b, tc.name)
			lines := splitLines(data, testFile)
			fake := &fakeLines{lines: lines}
			src := NewSource(fake, Format{TransportLog, tc.enc}, zerolog.Nop())
			events := 0
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				fake.next = 0
				for {
					if _, err := src.Next(context.Background()); err != nil {
						break
					}
					events++
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(events), "ns/event")
		})
	}
}
