package main

import (
	"fmt"

	"github.com/rs/zerolog"

	"dovecot-kafka/config"
	"dovecot-kafka/follow"
	"dovecot-kafka/pipeline"
)

// wrapInput returns the source of events-file lines for cfg.Input: the
// reader itself for push-events.lua's file.
func wrapInput(cfg *config.Config, reader *follow.Reader, _ zerolog.Logger) (pipeline.Source, error) {
	if cfg.Input != "lua" {
		return nil, fmt.Errorf("input %q is not available in this build", cfg.Input)
	}
	return reader, nil
}
