// Package jsutil holds what coldstart's JetStream streams share: creating
// or updating a stream when several gateways start at once.
package jsutil

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// EnsureStream creates the stream sc, or updates it to sc. Gateways call it
// on start, several at once: an update is idempotent and the server
// accepts creating an identical stream; two creators racing with
// different settings make the loser's create fail as "in use", and its
// update then applies. what names the stream in errors.
func EnsureStream(ctx context.Context, nc *nats.Conn, sc jetstream.StreamConfig, what string) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		_, err = js.CreateOrUpdateStream(ctx, sc)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) && attempt < 3 {
			continue
		}
		break
	}
	if err != nil {
		return fmt.Errorf("%s stream %s: %w", what, sc.Name, err)
	}
	return nil
}
