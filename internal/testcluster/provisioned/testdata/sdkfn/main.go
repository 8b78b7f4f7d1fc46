// Command sdkfn is the aws-lambda-go handler the SDK walkthrough deploys:
// it echoes which code and version ran, fails or sleeps on request, and
// hands back the client context it was given.
package main

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

// tag names the build (set with -ldflags -X main.tag=...), so a caller can
// tell which code ran.
var tag = "untagged"

type event struct {
	SleepMs int    `json:"sleep_ms"`
	Fail    string `json:"fail"`
}

type answer struct {
	Tag           string `json:"tag"`
	Version       string `json:"version"`
	RequestID     string `json:"request_id"`
	ClientContext string `json:"client_context,omitempty"`
	InitType      string `json:"init_type"`
}

func handle(ctx context.Context, e event) (answer, error) {
	lc, _ := lambdacontext.FromContext(ctx)
	if e.SleepMs > 0 {
		select {
		case <-time.After(time.Duration(e.SleepMs) * time.Millisecond):
		case <-ctx.Done():
		}
	}
	if e.Fail != "" {
		return answer{}, errors.New(e.Fail)
	}
	a := answer{Tag: tag, Version: os.Getenv("AWS_LAMBDA_FUNCTION_VERSION"), RequestID: lc.AwsRequestID, InitType: os.Getenv("AWS_LAMBDA_INITIALIZATION_TYPE")}
	if lc.ClientContext.Custom != nil {
		a.ClientContext = lc.ClientContext.Custom["k"]
	}
	println("handled", lc.AwsRequestID)
	return a, nil
}

func main() { lambda.Start(handle) }
