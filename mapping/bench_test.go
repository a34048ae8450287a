package mapping

import (
	"bufio"
	"os"
	"testing"

	"dovecot-kafka/parser"
)

// scenarioLines returns, per event kind, the first line of that kind in the
// events file a real Dovecot wrote for the shared scenario that the
// "dovecot" driver publishes (Dovecot also reports flag changes that change
// nothing). The first such lines are user-a's, whose userdb fields let the
// "feature" driver publish them too.
func scenarioLines(b *testing.B) map[parser.Kind][]byte {
	f, err := os.Open("testdata/scenario-events.jsonl")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	out := map[parser.Kind][]byte{}
	all := referenceDrivers(b)["dovecot"]
	var p parser.Parser
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		ev, err := p.Parse(sc.Bytes())
		if err != nil {
			b.Fatal(err)
		}
		if _, published := all.AppendValue(nil, ev); !published {
			continue
		}
		if _, ok := out[ev.Kind]; !ok {
			out[ev.Kind] = append([]byte(nil), sc.Bytes()...)
		}
	}
	if len(out) != 12 {
		b.Fatalf("the scenario has %d event kinds, want 12", len(out))
	}
	return out
}

// BenchmarkParse parses one line of each event kind.
func BenchmarkParse(b *testing.B) {
	for _, k := range parser.AllKinds() {
		line := scenarioLines(b)[k]
		b.Run(k.String(), func(b *testing.B) {
			var p parser.Parser
			b.SetBytes(int64(len(line)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.Parse(line); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRender renders one event of each kind for the three reference
// drivers (dovecot, flags, feature), as the daemon does for every line.
func BenchmarkRender(b *testing.B) {
	drivers := referenceDrivers(b)
	list := []*Driver{drivers["dovecot"], drivers["flags"], drivers["feature"]}
	for _, k := range parser.AllKinds() {
		line := scenarioLines(b)[k]
		b.Run(k.String(), func(b *testing.B) {
			var p parser.Parser
			ev, err := p.Parse(line)
			if err != nil {
				b.Fatal(err)
			}
			buf := make([]byte, 0, 8192)
			b.ReportAllocs()
			for b.Loop() {
				buf = buf[:0]
				for _, d := range list {
					buf, _ = d.AppendValue(buf, ev)
				}
			}
		})
	}
}
