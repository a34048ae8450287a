package mapping

import (
	"bufio"
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"dovecot-kafka/parser"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestScenarioGolden renders the events file that push-events.lua wrote for
// the shared IMAP/LMTP scenario on a real Dovecot 2.3.19 through the three
// reference drivers, and compares each topic's values byte for byte with
// testdata/scenario.TOPIC.golden.jsonl. Those files were checked with the
// shared golden/compare.py --exact against the contract's expected
// captures; test/e2e/run.sh repeats that check end to end on every run.
func TestScenarioGolden(t *testing.T) {
	f, err := os.Open("testdata/scenario-events.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	drivers := referenceDrivers(t)
	got := map[string]*bytes.Buffer{}
	for name := range drivers {
		got[name] = &bytes.Buffer{}
	}
	var p parser.Parser
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		ev, err := p.Parse(sc.Bytes())
		if err != nil {
			t.Fatalf("line %d: %v", n, err)
		}
		for name, d := range drivers {
			if v, ok := d.AppendValue(nil, ev); ok {
				got[name].Write(v)
				got[name].WriteByte('\n')
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	for name, buf := range got {
		path := filepath.Join("testdata", "scenario."+name+".golden.jsonl")
		if *update {
			if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test -update to create it)", err)
		}
		if !bytes.Equal(buf.Bytes(), want) {
			gl, wl := bytes.Split(buf.Bytes(), []byte("\n")), bytes.Split(want, []byte("\n"))
			for i := 0; i < len(gl) || i < len(wl); i++ {
				var g, w []byte
				if i < len(gl) {
					g = gl[i]
				}
				if i < len(wl) {
					w = wl[i]
				}
				if !bytes.Equal(g, w) {
					t.Fatalf("%s line %d:\n got %s\nwant %s", name, i+1, g, w)
				}
			}
		}
	}
}
