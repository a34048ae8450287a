package tools

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"dovecot-kafka/config"
	"dovecot-kafka/sink"
	"dovecot-kafka/state"
)

const checkSynopsis = `
Usage: dovecot-kafka check [-config FILE] [-timeout 10s]

Checks what the daemon needs, as the user running it, and lists the problems:

  - the configuration file loads; its effective settings are printed (every
    key, defaults filled in, secrets redacted), with the librdkafka
    properties the daemon uses and the userdb fields Dovecot must pass
  - events_file exists and is readable; the checkpoint and dead-letter
    directories exist and are writable; the checkpoint is usable
  - Kafka answers within -timeout, and each driver's topic (and the
    exactly_once position topic) exists; whether this principal may write
    to it is taken from the broker's authorized operations for the topic
    where the broker reports them (DescribeTopics)

Nothing is written: no topic is created, no record produced, no file
changed. The exit status is 0 when all is well, 1 with problems.

Example:
  sudo -u dovecot-kafka dovecot-kafka check -config /etc/dovecot-kafka/dovecot-kafka.toml
`

// Check runs the check command with args (the words after "check").
func Check(ctx context.Context, args []string, stdio IO) int {
	c := newCommand("check", stdio, checkSynopsis)
	configPath := c.fs.String("config", DefaultConfig, "configuration `file` (TOML)")
	timeout := c.fs.Duration("timeout", 10*time.Second, "how long to wait for Kafka")
	words, status, ok := c.parse(args)
	if !ok {
		return status
	}
	if len(words) > 0 {
		return c.usageError("unexpected argument %q: check takes only flags", words[0])
	}
	if *timeout <= 0 {
		return c.usageError("-timeout %s: give a positive duration, e.g. 10s", *timeout)
	}

	ck := &checker{w: stdio.Out}
	cfg, err := config.Load(*configPath)
	if err != nil {
		ck.problem("configuration: %v", err)
		return ck.finish()
	}
	fmt.Fprintf(ck.w, "configuration %s: valid\n\n", *configPath)

	fmt.Fprintln(ck.w, "Effective settings (defaults filled in, secrets redacted):")
	writeEffective(ck.w, cfg, "    ")
	fmt.Fprintln(ck.w, "\nlibrdkafka properties of the daemon's producer (secrets redacted):")
	for _, kv := range sink.SortedConfig(sink.ConfigMap(cfg.Sink(), true)) {
		fmt.Fprintf(ck.w, "    %s\n", kv)
	}
	fmt.Fprintln(ck.w)
	if fields := cfg.UserdbFields(); len(fields) > 0 {
		fmt.Fprintf(ck.w, "userdb fields Dovecot must pass: push_events_userdb_fields = %s\n", strings.Join(fields, ","))
	} else {
		fmt.Fprintln(ck.w, "userdb fields Dovecot must pass: none (no driver uses feature or userdb)")
	}

	ck.files(cfg)
	ck.kafka(ctx, cfg, *timeout)
	return ck.finish()
}

// checker collects the findings of a check.
type checker struct {
	w        io.Writer
	problems []string
}

func (ck *checker) ok(format string, args ...any) {
	fmt.Fprintf(ck.w, "  ok       %s\n", fmt.Sprintf(format, args...))
}

func (ck *checker) info(format string, args ...any) {
	fmt.Fprintf(ck.w, "  note     %s\n", fmt.Sprintf(format, args...))
}

func (ck *checker) problem(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	fmt.Fprintf(ck.w, "  PROBLEM  %s\n", msg)
	ck.problems = append(ck.problems, msg)
}

// finish prints the list of problems and returns the exit status.
func (ck *checker) finish() int {
	if len(ck.problems) == 0 {
		fmt.Fprintln(ck.w, "\nAll checks passed.")
		return ExitOK
	}
	fmt.Fprintf(ck.w, "\n%d problem(s):\n", len(ck.problems))
	for _, p := range ck.problems {
		fmt.Fprintf(ck.w, "  - %s\n", p)
	}
	return ExitFailed
}

// files checks the files the daemon reads and writes, as this user.
func (ck *checker) files(cfg *config.Config) {
	who := fmt.Sprintf("uid %d", os.Geteuid())
	if u, err := user.Current(); err == nil {
		who = fmt.Sprintf("user %s, uid %s", u.Username, u.Uid)
	}
	fmt.Fprintf(ck.w, "\nFiles (as %s):\n", who)

	// The events file: Dovecot creates it with the first event.
	f, err := os.Open(cfg.EventsFile)
	switch {
	case err == nil:
		fi, _ := f.Stat()
		f.Close()
		ck.ok("events_file %s: readable, %d bytes", cfg.EventsFile, fi.Size())
	case errors.Is(err, fs.ErrNotExist):
		if _, derr := os.Stat(filepath.Dir(cfg.EventsFile)); derr != nil {
			ck.problem("events_file %s: its directory: %v (create it so that Dovecot's mail user can write and the daemon can read; see dovecot-conf/push-events-2.3.conf)", cfg.EventsFile, derr)
		} else {
			ck.info("events_file %s does not exist yet: Dovecot's push-events.lua creates it with the first event, and the daemon waits for it", cfg.EventsFile)
		}
	default:
		ck.problem("events_file %s: %v (the daemon must be able to read it: run it as the mail user, or see the group and ACL setup in dovecot-conf/push-events-2.3.conf)", cfg.EventsFile, err)
	}

	ck.writableDir("checkpoint directory", filepath.Dir(cfg.CheckpointFile))
	store := state.NewStore(cfg.CheckpointFile)
	cp, err := store.Load()
	switch {
	case err == nil:
		ck.ok("checkpoint %s: offset %d in inode %d, saved %s", cfg.CheckpointFile, cp.Offset, cp.Inode, cp.Updated.UTC().Format(time.RFC3339))
	case errors.Is(err, state.ErrNoCheckpoint):
		ck.info("checkpoint %s does not exist yet: the daemon starts at the beginning of events_file", cfg.CheckpointFile)
	default:
		ck.problem("checkpoint: %v", err)
	}
	ck.writableDir("dead_letter_file directory", filepath.Dir(cfg.DeadLetterFile))
	if _, err := os.Stat(cfg.DeadLetterFile); err == nil {
		if err := syscall.Access(cfg.DeadLetterFile, 2 /* W_OK */); err != nil {
			ck.problem("dead_letter_file %s: not writable: %v", cfg.DeadLetterFile, err)
		}
	}
	held, pid, err := store.LockHolder()
	switch {
	case err != nil:
		ck.info("checkpoint lock: cannot tell: %v", err)
	case held:
		ck.info("checkpoint lock: held by process %s (a daemon is running)", pid)
	default:
		ck.info("checkpoint lock: free (no daemon is running with this checkpoint)")
	}
}

// writableDir checks that dir exists and that this user may create files
// in it.
func (ck *checker) writableDir(what, dir string) {
	fi, err := os.Stat(dir)
	switch {
	case err != nil:
		ck.problem("%s %s: %v (create it, owned by the user the daemon runs as)", what, dir, err)
	case !fi.IsDir():
		ck.problem("%s %s is not a directory", what, dir)
	default:
		if err := syscall.Access(dir, 2|1 /* W_OK|X_OK */); err != nil {
			ck.problem("%s %s: not writable by this user: %v", what, dir, err)
			return
		}
		ck.ok("%s %s: writable", what, dir)
	}
}

// kafka connects to the brokers and checks the topics.
func (ck *checker) kafka(ctx context.Context, cfg *config.Config, timeout time.Duration) {
	fmt.Fprintf(ck.w, "\nKafka (%s):\n", cfg.Kafka.Brokers)
	cm := kafka.ConfigMap{
		"go.logs.channel.enable": true,
		// Never create a topic by asking about it.
		"allow.auto.create.topics": false,
		// Nothing is produced: no producer id to ask for.
		"enable.idempotence": false,
	}
	for k, v := range sink.ConfigMap(cfg.Sink(), false) {
		if _, set := cm[k]; !set && k != "transactional.id" {
			cm[k] = v
		}
	}
	p, err := kafka.NewProducer(&cm)
	if err != nil {
		ck.problem("kafka client settings: %v", err)
		return
	}
	lastErr := drainClient(p)
	defer p.Close()
	admin, err := kafka.NewAdminClientFromProducer(p)
	if err != nil {
		ck.problem("kafka admin client: %v", err)
		return
	}
	defer admin.Close()

	md, err := p.GetMetadata(nil, false, int(timeout/time.Millisecond))
	if err != nil {
		msg := fmt.Sprintf("cannot reach Kafka at %s within %s: %v", cfg.Kafka.Brokers, timeout, err)
		if e := lastErr(); e != "" {
			msg += "; last client error: " + e
		}
		ck.problem("%s (check kafka.brokers, the network, and the security settings in kafka.settings)", msg)
		return
	}
	ck.ok("reachable: %d broker(s) answered", len(md.Brokers))

	// Topics in driver order, each once, with the drivers that use it.
	var topics []string
	users := map[string][]string{}
	for _, d := range cfg.MappingDrivers() {
		if users[d.Topic] == nil {
			topics = append(topics, d.Topic)
		}
		users[d.Topic] = append(users[d.Topic], "driver "+d.Name)
	}
	if eo := cfg.ExactlyOnce; eo.Enabled {
		if users[eo.PositionTopic] == nil {
			topics = append(topics, eo.PositionTopic)
		}
		users[eo.PositionTopic] = append(users[eo.PositionTopic], "exactly_once position_topic")
	}

	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res, err := admin.DescribeTopics(dctx, kafka.NewTopicCollectionOfTopicNames(topics),
		kafka.SetAdminOptionIncludeAuthorizedOperations(true))
	if err != nil {
		ck.info("DescribeTopics failed (%v); falling back to a metadata request, which does not report write permission", err)
		for _, t := range topics {
			ck.topicByMetadata(p, t, users[t], timeout)
		}
		return
	}
	for _, td := range res.TopicDescriptions {
		ck.topic(td, users[td.Name])
	}
	if eo := cfg.ExactlyOnce; eo.Enabled {
		ck.compacted(ctx, admin, eo.PositionTopic, timeout)
	}
}

// topic reports one DescribeTopics result.
func (ck *checker) topic(td kafka.TopicDescription, users []string) {
	what := fmt.Sprintf("topic %s (%s)", td.Name, strings.Join(users, ", "))
	switch td.Error.Code() {
	case kafka.ErrNoError:
	case kafka.ErrUnknownTopicOrPart, kafka.ErrUnknownTopic:
		ck.problem("%s does not exist: create it with the partitions and replication you want (e.g. kafka-topics.sh --create --topic %s), or the daemon's first record creates it with the broker's defaults if auto.create.topics.enable is on", what, td.Name)
		return
	case kafka.ErrTopicAuthorizationFailed:
		ck.problem("%s: not authorized to describe it, so this principal cannot write to it either (grant WRITE on the topic)", what)
		return
	default:
		ck.problem("%s: %v", what, td.Error)
		return
	}

	ops := td.AuthorizedOperations
	if len(ops) == 0 {
		ck.ok("%s: exists, %d partitions; write permission not reported by the broker (no authorizer configured, or it withholds authorized operations): not checked", what, len(td.Partitions))
		return
	}
	names := make([]string, len(ops))
	canWrite := false
	for i, op := range ops {
		names[i] = op.String()
		canWrite = canWrite || op == kafka.ACLOperationWrite || op == kafka.ACLOperationAll
	}
	if !canWrite {
		ck.problem("%s: exists, %d partitions, but this principal may not write to it (authorized operations: %s): grant WRITE on the topic", what, len(td.Partitions), strings.Join(names, ", "))
		return
	}
	ck.ok("%s: exists, %d partitions; write allowed (authorized operations: %s)", what, len(td.Partitions), strings.Join(names, ", "))
}

// topicByMetadata checks one topic with a metadata request.
func (ck *checker) topicByMetadata(p *kafka.Producer, topic string, users []string, timeout time.Duration) {
	md, err := p.GetMetadata(&topic, false, int(timeout/time.Millisecond))
	if err != nil {
		ck.problem("topic %s: metadata request failed: %v", topic, err)
		return
	}
	tm, ok := md.Topics[topic]
	if !ok {
		ck.problem("topic %s: not in the metadata answer", topic)
		return
	}
	ck.topic(kafka.TopicDescription{Name: topic, Error: tm.Error, Partitions: make([]kafka.TopicPartitionInfo, len(tm.Partitions))}, users)
}

// compacted notes a position topic that is not compacted.
func (ck *checker) compacted(ctx context.Context, admin *kafka.AdminClient, topic string, timeout time.Duration) {
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res, err := admin.DescribeConfigs(dctx, []kafka.ConfigResource{{Type: kafka.ResourceTopic, Name: topic}})
	if err != nil || len(res) != 1 || res[0].Error.Code() != kafka.ErrNoError {
		return // exists or not is reported above; the policy is a detail
	}
	if policy := res[0].Config["cleanup.policy"].Value; !strings.Contains(policy, "compact") {
		ck.info("position topic %s has cleanup.policy=%s: make it compact, or it keeps one record per transaction until retention deletes them", topic, policy)
	}
}

// drainClient consumes the producer's events and librdkafka's log lines
// (a client that is not drained stalls) and returns a function that gives
// the last error seen, for messages: librdkafka's last warning if there is
// one (it names the broker and the cause), else the last error event.
func drainClient(p *kafka.Producer) func() string {
	var mu sync.Mutex
	var lastLog, lastErr string
	go func() {
		for ev := range p.Events() {
			if e, ok := ev.(kafka.Error); ok {
				mu.Lock()
				lastErr = e.Error()
				mu.Unlock()
			}
		}
	}()
	go func() {
		for l := range p.Logs() {
			if l.Level <= 4 {
				mu.Lock()
				lastLog = l.Message
				mu.Unlock()
			}
		}
	}()
	return func() string {
		mu.Lock()
		defer mu.Unlock()
		if lastLog != "" {
			return lastLog
		}
		return lastErr
	}
}
