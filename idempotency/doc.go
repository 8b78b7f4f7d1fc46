// Package idempotency makes AWS Lambda handlers written with
// github.com/aws/aws-lambda-go idempotent, with the semantics of Powertools
// for AWS Lambda's idempotency utility and its Redis persistence layer, on
// any Redis-protocol server.
//
//	store := idempotency.NewRedisStore(redis.NewClient(&redis.Options{Addr: addr}))
//	lambda.Start(idempotency.Wrap(handle, store, idempotency.Config{
//		EventKeyPath:          "powertools_json(body).order_id",
//		PayloadValidationPath: "powertools_json(body).amount",
//	}))
//
// The first event for a key claims it with an INPROGRESS record and runs the
// handler; success stores the response in a COMPLETED record that answers
// every duplicate until ExpiresAfter; failure deletes the record so a retry
// runs again. A duplicate arriving while an attempt runs gets
// ErrAlreadyInProgress; once that attempt's deadline (the context deadline
// aws-lambda-go sets from the invocation) has passed, its record is an
// orphan and one retry, chosen by a short "{key}:lock", takes it over.
//
// Keys are "{function}.{handler}#" + md5 of the selected data serialised as
// Python's json.dumps(data, sort_keys=True), so a Go and a Python function
// sharing a Redis and a key prefix find each other's records. See DESIGN.md
// for the exact Redis commands and the differences from Powertools.
package idempotency
