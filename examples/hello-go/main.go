// Command hello-go is a Lambda function for the provided.al2023 runtime:
// an aws-lambda-go handler compiled into an executable named bootstrap.
//
// It greets the name in its event and says which build and version of the
// function answered, so a caller can tell deployments and aliases apart.
package main

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

// build labels the binary; set it with -ldflags '-X main.build=v2' to give
// a new deployment different code (and so a new version when published).
var build = "v1"

type event struct {
	Name string `json:"name"`
}

type answer struct {
	Message   string `json:"message"`
	Build     string `json:"build"`
	Version   string `json:"function_version"`
	RequestID string `json:"request_id"`
}

func handle(ctx context.Context, e event) (answer, error) {
	lc, _ := lambdacontext.FromContext(ctx)
	name := e.Name
	if name == "" {
		name = "world"
	}
	// Lines the function writes go to its log stream, and to the
	// LogResult of an invocation with LogType Tail.
	log.Printf("greeting %s", name)
	return answer{
		Message:   fmt.Sprintf("Hello, %s!", name),
		Build:     build,
		Version:   os.Getenv("AWS_LAMBDA_FUNCTION_VERSION"),
		RequestID: lc.AwsRequestID,
	}, nil
}

func main() { lambda.Start(handle) }
