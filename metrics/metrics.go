// Package metrics exposes the daemon's counters in the Prometheus text
// format. The counters live where the work happens (pipeline.Stats,
// follow.Stats); this package only reads them when scraped, so the hot
// path pays nothing for metrics.
package metrics

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"dovecot-kafka/follow"
	"dovecot-kafka/pipeline"
)

// Sources are what the metrics read. Follow returns the current reader's
// counters (the reader is replaced when the flow restarts, so the caller
// keeps the totals); Committed returns the saved position's offset.
type Sources struct {
	Stats     *pipeline.Stats
	Follow    func() follow.Stats
	Committed func() (offset int64, ok bool)
}

// Registry returns a registry with the daemon's metrics, all prefixed
// dovecot_kafka_.
func Registry(src Sources) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	s := src.Stats
	counter := func(name, help string, f func() float64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "dovecot_kafka_" + name, Help: help,
		}, f))
	}
	counter("lines_read_total", "Lines read from the events file.", func() float64 { return float64(s.LinesRead.Load()) })
	counter("records_produced_total", "Records handed to the Kafka producer.", func() float64 { return float64(s.RecordsProduced.Load()) })
	counter("records_delivered_total", "Records Kafka acknowledged.", func() float64 { return float64(s.RecordsDelivered.Load()) })
	counter("records_rejected_total", "Records Kafka rejected for good (dead-lettered).", func() float64 { return float64(s.RecordsRejected.Load()) })
	counter("dead_lettered_total", "Entries written to the dead-letter file.", func() float64 { return float64(s.DeadLettered.Load()) })
	counter("checkpoint_errors_total", "Failed checkpoint saves (retried).", func() float64 { return float64(s.CheckpointErrors.Load()) })

	bad := prometheus.NewDesc("dovecot_kafka_bad_lines_total", "Lines that cannot be published, by kind.", []string{"kind"}, nil)
	reg.MustRegister(collectorFunc{desc: bad, collect: func(ch chan<- prometheus.Metric) {
		for _, k := range pipeline.BadKinds() {
			ch <- prometheus.MustNewConstMetric(bad, prometheus.CounterValue, float64(s.BadByKind[k].Load()), k.String())
		}
	}})

	if src.Follow != nil {
		file := prometheus.NewDesc("dovecot_kafka_file_events_total",
			"What happened to the events file: rotations, truncations, copies read to their end after copytruncate, truncations with no copy found, rotated generations gone before they were read, too-long lines, NUL bytes skipped, partial lines dropped.",
			[]string{"event"}, nil)
		reg.MustRegister(collectorFunc{desc: file, collect: func(ch chan<- prometheus.Metric) {
			fs := src.Follow()
			for name, v := range map[string]uint64{
				"rotation":          fs.Rotations,
				"truncation":        fs.Truncations,
				"too_long_line":     fs.TooLong,
				"nul_byte":          fs.NULBytes,
				"dropped_partial":   fs.Fragments,
				"copy_finished":     fs.CopiesFinished,
				"copy_missing":      fs.CopiesMissing,
				"generation_missed": fs.GenerationsMissed,
			} {
				ch <- prometheus.MustNewConstMetric(file, prometheus.CounterValue, float64(v), name)
			}
		}})
	}
	if src.Committed != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "dovecot_kafka_committed_offset_bytes",
			Help: "Byte offset in the current events file up to which Kafka acknowledged every line.",
		}, func() float64 {
			off, _ := src.Committed()
			return float64(off)
		}))
	}
	return reg
}

type collectorFunc struct {
	desc    *prometheus.Desc
	collect func(chan<- prometheus.Metric)
}

func (c collectorFunc) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c collectorFunc) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }

// Serve answers /metrics on addr until ctx is done. It returns once the
// listener is open, or with the error that kept it from opening; a later
// failure of the server is logged.
func Serve(ctx context.Context, addr string, reg *prometheus.Registry, log zerolog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	var once sync.Once
	go func() {
		<-ctx.Done()
		once.Do(func() {
			sctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		})
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error().Err(err).Str("listen", addr).Msg("metrics server stopped; publishing goes on")
		}
	}()
	return nil
}
