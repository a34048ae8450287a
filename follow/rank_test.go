package follow

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// Case: the order of generations by name, oldest first, whatever the order
// of the directory listing: dated names (digit runs compared as numbers),
// then numbered ones from the largest number down, then the events file.
func TestCompareRank(t *testing.T) {
	const base = "events.jsonl"
	want := []string{
		"events.jsonl-20261203",
		"events.jsonl-20261204-1",
		"events.jsonl-20261204-2",
		"events.jsonl-20261204-10",
		"events.jsonl-20261205",
		"events.jsonl_2026-12-06T10",
		"events.jsonl.12",
		"events.jsonl.10",
		"events.jsonl.9",
		"events.jsonl.2",
		"events.jsonl.1",
		"events.jsonl",
	}
	for range 20 {
		names := slices.Clone(want)
		rand.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
		slices.SortFunc(names, func(a, b string) int {
			ra, _, okA := parseRank(base, a)
			rb, _, okB := parseRank(base, b)
			if !okA || !okB {
				t.Fatalf("%s or %s not taken for a generation", a, b)
			}
			return compareRank(ra, rb)
		})
		if !slices.Equal(names, want) {
			t.Fatalf("order:\n%q\nwant\n%q", names, want)
		}
	}
}

// Case: which names are generations, and which are compressed ones.
func TestParseRank(t *testing.T) {
	const base = "events.jsonl"
	for _, tc := range []struct {
		name           string
		ok, compressed bool
		want           rank
	}{
		{"events.jsonl", true, false, rank{kind: rankCurrent}},
		{"events.jsonl.1", true, false, rank{kind: rankNumbered, num: 1}},
		{"events.jsonl.2.gz", true, true, rank{kind: rankNumbered, num: 2}},
		{"events.jsonl-20261204.zst", true, true, rank{kind: rankOther, suffix: "-20261204"}},
		{"events.jsonl.1.bak", true, false, rank{kind: rankOther, suffix: ".1.bak"}},
		{"events.jsonl.99999999999999999999", true, false, rank{kind: rankOther, suffix: ".99999999999999999999"}},
		{"events.jsonl.pos", false, false, rank{}}, // no digit: the daemon's own files
		{"events.jsonl.tmp", false, false, rank{}}, // likewise
		{"events.jsonl2", false, false, rank{}},    // no separator: another file
		{"other.jsonl.1", false, false, rank{}},    // another name
		{"events.json.1", false, false, rank{}},    // shorter than the events file's name
	} {
		got, compressed, ok := parseRank(base, tc.name)
		if ok != tc.ok || compressed != tc.compressed || got != tc.want {
			t.Errorf("parseRank(%q) = %+v, %v, %v; want %+v, %v, %v", tc.name, got, compressed, ok, tc.want, tc.compressed, tc.ok)
		}
	}
}

// Case: which gone generations are reported between the file left and the
// next one: a compressed file with no plain one of the same place, and
// numbers missing from a numbered sequence, oldest first.
func TestMissedBetween(t *testing.T) {
	const base = "events.jsonl"
	g := func(name string, size int64) gen {
		rk, compressed, ok := parseRank(base, name)
		if !ok {
			t.Fatalf("%s is not a generation", name)
		}
		return gen{name: "/d/" + name, rank: rk, compressed: compressed, size: size}
	}
	gens := []gen{
		g("events.jsonl.7.gz", 70), // older than the file left
		g("events.jsonl.6", 60),    // the file left
		g("events.jsonl.5.gz", 50), // gone
		g("events.jsonl.3.gz", 30), // being compressed: the plain file is still there
		g("events.jsonl.3", 31),
		g("events.jsonl.2", 20), // the next one
		g("events.jsonl.1.gz", 10),
	}
	left, next := gens[1].rank, gens[5].rank
	got := missedBetween(gens, base, "/d", left, next)
	want := []missedGen{
		{"/d/events.jsonl.5.gz", 50, "compressed"},
		{"/d/events.jsonl.4", -1, "deleted"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("missed = %+v, want %+v", got, want)
	}
	if got := missedBetween(gens, base, "/d", next, left); got != nil {
		t.Errorf("missed going backwards = %+v, want none", got)
	}
}
