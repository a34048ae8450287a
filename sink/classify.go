package sink

import (
	"errors"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// Class says what the daemon does with a record whose delivery failed.
type Class int

const (
	// Retry: the record may still be delivered; it is produced again and
	// its line is not acknowledged until it is.
	Retry Class = iota
	// GiveUp: the broker rejects this record for good (too large, not
	// authorised, invalid). Producing it again would fail the same way, so
	// it goes to the dead-letter file and its line counts as handled.
	GiveUp
	// Fatal: the producer itself is unusable (for example the idempotent
	// producer lost its sequence state). Nothing more can be delivered
	// through it.
	Fatal
)

func (c Class) String() string {
	switch c {
	case Retry:
		return "retry"
	case GiveUp:
		return "give-up"
	case Fatal:
		return "fatal"
	}
	return "unknown"
}

// Classify decides, for one failed delivery, whether to retry, give up on
// the record, or treat the producer as broken. It is the only place that
// makes this decision. confluent-kafka-go sets IsRetriable only for
// transactional calls, so delivery reports are classified by code.
func Classify(err error) Class {
	var kerr kafka.Error
	if !errors.As(err, &kerr) {
		return Retry
	}
	if kerr.IsFatal() {
		return Fatal
	}
	switch kerr.Code() {
	case kafka.ErrMsgSizeTooLarge, // the record exceeds message.max.bytes
		kafka.ErrInvalidMsgSize,              // the broker's max.message.bytes is smaller
		kafka.ErrInvalidMsg,                  // corrupt record; the same bytes stay corrupt
		kafka.ErrRecordListTooLarge,          // a single record larger than a batch may be
		kafka.ErrTopicAuthorizationFailed,    // ACLs forbid writing to the topic
		kafka.ErrClusterAuthorizationFailed,  // ACLs forbid idempotent writes
		kafka.ErrTopicException,              // invalid topic name
		kafka.ErrInvalidRecord,               // the broker rejected the record's content
		kafka.ErrPolicyViolation,             // a broker policy rejects it
		kafka.ErrUnsupportedForMessageFormat, // the topic's format cannot hold it
		kafka.ErrInvalidRequiredAcks:         // the configuration can never work
		return GiveUp
	}
	// Everything else (timeouts, leader changes, unreachable brokers, purges
	// on shutdown, unknown topics while metadata propagates) may succeed on
	// a later attempt.
	return Retry
}
