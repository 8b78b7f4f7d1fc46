package testcluster_test

import (
	"context"
	"errors"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/coldstart-dev/coldstart/internal/testcluster"
)

// TestOfficialSDK drives the gateway with the unmodified aws-sdk-go-v2
// Lambda client: control plane, invoke, and typed errors.
func TestOfficialSDK(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Gateways: 1, Workers: 1})
	ctx := context.Background()
	cl := lambda.New(lambda.Options{
		Region:       "eu-west-1",
		BaseEndpoint: aws.String(c.GatewayURL(0)),
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""),
	})
	_, err := cl.CreateFunction(ctx, &lambda.CreateFunctionInput{
		FunctionName: aws.String("sdk"),
		Runtime:      types.RuntimePython312,
		Role:         aws.String("arn:aws:iam::000000000000:role/x"),
		Handler:      aws.String("app.handler"),
		Code:         &types.FunctionCode{ZipFile: []byte("PK")},
		MemorySize:   aws.Int32(256),
		Timeout:      aws.Int32(5),
	})
	if err != nil {
		t.Fatalf("CreateFunction: %v", err)
	}
	out, err := cl.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("sdk"), Payload: []byte(`{"k":"v"}`), LogType: types.LogTypeTail})
	if err != nil {
		t.Fatalf("Invoke: %v", err)
	}
	if out.StatusCode != 200 || string(out.Payload) != `{"k":"v"}` || aws.ToString(out.ExecutedVersion) != "$LATEST" || aws.ToString(out.LogResult) == "" {
		t.Fatalf("Invoke output: %d %s %q log %q", out.StatusCode, out.Payload, aws.ToString(out.ExecutedVersion), aws.ToString(out.LogResult))
	}
	// Qualified by ARN, as the SDK escapes it (%3A).
	if _, err := cl.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("arn:aws:lambda:eu-west-1:000000000000:function:sdk:$LATEST")}); err != nil {
		t.Fatalf("Invoke by ARN: %v", err)
	}
	_, err = cl.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("missing")})
	var nf *types.ResourceNotFoundException
	if !errors.As(err, &nf) {
		t.Fatalf("missing function: want ResourceNotFoundException, got %T %v", err, err)
	}
	if _, err := cl.PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{FunctionName: aws.String("sdk"), ReservedConcurrentExecutions: aws.Int32(0)}); err != nil {
		t.Fatalf("PutFunctionConcurrency: %v", err)
	}
	// The SDK retries 429s; with reserved concurrency 0 every attempt is
	// throttled, so the typed error comes back with its Reason.
	_, err = cl.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("sdk")})
	var tm *types.TooManyRequestsException
	if !errors.As(err, &tm) || tm.Reason != types.ThrottleReasonReservedFunctionConcurrentInvocationLimitExceeded {
		t.Fatalf("throttle: want TooManyRequestsException with the reserved Reason, got %T %v", err, err)
	}
	_, err = cl.PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{FunctionName: aws.String("sdk"), ReservedConcurrentExecutions: aws.Int32(950)})
	var ip *types.InvalidParameterValueException
	if !errors.As(err, &ip) {
		t.Fatalf("reserving past the floor: want InvalidParameterValueException, got %T %v", err, err)
	}
	acct, err := cl.GetAccountSettings(ctx, &lambda.GetAccountSettingsInput{})
	if err != nil || acct.AccountLimit.ConcurrentExecutions != 1000 || acct.AccountLimit.UnreservedConcurrentExecutions == nil || *acct.AccountLimit.UnreservedConcurrentExecutions != 1000 {
		t.Fatalf("GetAccountSettings: %+v %v", acct, err)
	}
	list, err := cl.ListFunctions(ctx, &lambda.ListFunctionsInput{})
	if err != nil || len(list.Functions) != 1 || aws.ToString(list.Functions[0].FunctionName) != "sdk" {
		t.Fatalf("ListFunctions: %+v %v", list, err)
	}
	if _, err := cl.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String("sdk")}); err != nil {
		t.Fatalf("DeleteFunction: %v", err)
	}
}
