package metrics

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"dovecot-kafka/follow"
	"dovecot-kafka/pipeline"
)

func TestServeExposesCounters(t *testing.T) {
	var s pipeline.Stats
	s.LinesRead.Add(7)
	s.BadByKind[pipeline.BadUTF8].Add(2)
	reg := Registry(Sources{
		Stats:     &s,
		Follow:    func() follow.Stats { return follow.Stats{Rotations: 3} },
		Committed: func() (int64, bool) { return 1234, true },
	})

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := Serve(ctx, addr, reg, zerolog.New(zerolog.NewTestWriter(t))); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		"dovecot_kafka_lines_read_total 7",
		`dovecot_kafka_bad_lines_total{kind="invalid UTF-8"} 2`,
		`dovecot_kafka_file_events_total{event="rotation"} 3`,
		"dovecot_kafka_committed_offset_bytes 1234",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}
}
