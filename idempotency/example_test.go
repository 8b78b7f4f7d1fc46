package idempotency_test

import (
	"context"
	"encoding/json"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/redis/go-redis/v9"

	"github.com/coldstart-dev/coldstart/idempotency"
)

// BytesHandler must stay a lambda.Handler so lambda.Start passes it the raw
// event instead of JSON-decoding it into a []byte.
var _ lambda.Handler = idempotency.BytesHandler(nil)

type payment struct {
	OrderID string `json:"order_id"`
	Amount  int    `json:"amount"`
}

type receipt struct {
	PaymentID string `json:"payment_id"`
}

func charge(ctx context.Context, p payment) (receipt, error) {
	return receipt{PaymentID: "pay-" + p.OrderID}, nil
}

// A typed handler: a retried event with the same order_id gets the first
// receipt back without charging again; the same order_id with another
// amount is refused with ErrValidation.
func ExampleWrap() {
	store := idempotency.NewRedisStore(redis.NewClient(&redis.Options{Addr: "localhost:6379"}))
	lambda.Start(idempotency.Wrap(charge, store, idempotency.Config{
		EventKeyPath:          "order_id",
		PayloadValidationPath: "amount",
		ExpiresAfter:          24 * time.Hour,
	}))
}

// A raw handler behind API Gateway: the key is a field of the JSON body,
// computed exactly as Powertools computes it for the same event.
func ExampleWrapBytes() {
	store := idempotency.NewRedisStore(redis.NewClient(&redis.Options{Addr: "localhost:6379"}))
	handle := func(ctx context.Context, event []byte) ([]byte, error) {
		return json.Marshal(map[string]any{"statusCode": 200, "body": `{"ok":true}`})
	}
	lambda.Start(idempotency.WrapBytes(handle, store, idempotency.Config{
		EventKeyPath: `powertools_json(body).["order_id", "customer"]`,
		RaiseOnNoKey: true,
	}))
}
