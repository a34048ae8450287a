package main

import (
	"fmt"

	"github.com/rs/zerolog"

	"dovecot-kafka/config"
	"dovecot-kafka/exporter"
	"dovecot-kafka/follow"
	"dovecot-kafka/pipeline"
)

// wrapInput returns the source of events-file lines for cfg.Input: the
// reader itself for push-events.lua's file, or an exporter.Source that
// turns the event exporter's output (Dovecot's log, or the exporter's own
// file) into such lines.
func wrapInput(cfg *config.Config, reader *follow.Reader, log zerolog.Logger) (pipeline.Source, error) {
	if cfg.Input == "lua" {
		return reader, nil
	}
	format, err := exporter.ParseFormat(cfg.Input, cfg.ExporterFormat)
	if err != nil {
		return nil, fmt.Errorf("input: %w", err)
	}
	return exporter.NewSource(reader, format, log.With().Str("component", "exporter").Logger()), nil
}
