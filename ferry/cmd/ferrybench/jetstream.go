package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// runJetStream measures NATS JetStream end to end: n messages of size bytes published
// asynchronously, each with a Nats-Msg-Id, to a file-storage stream with a duplicate window,
// and taken by a durable pull consumer that acknowledges each explicitly. The clock runs from the
// first publish to the last acknowledgement (flushed to the server); every publish must have
// been acknowledged by the stream. The stream is deleted afterwards.
func runJetStream(ctx context.Context, natsURL string, n, size int) (result, error) {
	nc, err := nats.Connect(natsURL, nats.Name("ferrybench"), nats.Timeout(5*time.Second))
	if err != nil {
		return result{}, fmt.Errorf("jetstream: connect %s: %w", natsURL, err)
	}
	defer nc.Close()
	var pubErrs atomic.Int64
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096),
		jetstream.WithPublishAsyncErrHandler(func(jetstream.JetStream, *nats.Msg, error) { pubErrs.Add(1) }))
	if err != nil {
		return result{}, err
	}
	tag := make([]byte, 6)
	rand.Read(tag)
	name := "FERRYBENCH_" + hex.EncodeToString(tag)
	subject := "ferrybench." + hex.EncodeToString(tag)
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	stream, err := js.CreateStream(sctx, jetstream.StreamConfig{Name: name, Subjects: []string{subject},
		Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute, Retention: jetstream.LimitsPolicy})
	if err != nil {
		return result{}, fmt.Errorf("jetstream: create stream (is JetStream enabled?): %w", err)
	}
	defer js.DeleteStream(context.WithoutCancel(ctx), name)
	cons, err := stream.CreateOrUpdateConsumer(sctx, jetstream.ConsumerConfig{Durable: "ferrybench",
		AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 20000})
	if err != nil {
		return result{}, fmt.Errorf("jetstream: create consumer: %w", err)
	}
	payload := make([]byte, size)
	rand.Read(payload)

	it, err := cons.Messages(jetstream.PullMaxMessages(2000))
	if err != nil {
		return result{}, err
	}
	defer it.Stop()
	consumed := make(chan error, 1)
	start := time.Now()
	go func() {
		for got := 0; got < n; got++ {
			m, err := it.Next()
			if err != nil {
				consumed <- fmt.Errorf("jetstream: consume after %d: %w", got, err)
				return
			}
			if err := m.Ack(); err != nil {
				consumed <- fmt.Errorf("jetstream: ack: %w", err)
				return
			}
		}
		consumed <- nc.FlushTimeout(30 * time.Second)
	}()
	for i := range n {
		msg := &nats.Msg{Subject: subject, Data: payload, Header: nats.Header{}}
		msg.Header.Set(jetstream.MsgIDHeader, name+"-"+strconv.Itoa(i))
		// A full window of unacknowledged publishes waits for room (up to a minute) rather than
		// failing the run.
		if _, err := js.PublishMsgAsync(msg, jetstream.WithStallWait(time.Minute)); err != nil {
			return result{}, fmt.Errorf("jetstream: publish %d: %w", i, err)
		}
	}
	timeout := time.NewTimer(2 * time.Minute)
	defer timeout.Stop()
	select {
	case <-js.PublishAsyncComplete():
	case <-timeout.C:
		return result{}, errors.New("jetstream: publishes not acknowledged within 2 minutes")
	}
	select {
	case err := <-consumed:
		if err != nil {
			return result{}, err
		}
	case <-timeout.C:
		return result{}, errors.New("jetstream: messages not consumed within 2 minutes")
	}
	elapsed := time.Since(start)
	if e := pubErrs.Load(); e > 0 {
		return result{}, fmt.Errorf("jetstream: %d publishes failed", e)
	}
	return result{n: n, elapsed: elapsed}, nil
}
