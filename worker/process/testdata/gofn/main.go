// Command gofn is an aws-lambda-go function whose behaviour the event selects,
// used by the process package's tests.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

type event struct {
	Op string `json:"op"`
	MB int    `json:"mb"`
	Ms int    `json:"ms"`
}

var (
	counter int
	held    [][]byte
	spin    uint64
)

func alloc(mb int) {
	for i := 0; i < mb; i++ {
		b := make([]byte, 1<<20)
		for j := 0; j < len(b); j += 4096 {
			b[j] = 1
		}
		held = append(held, b)
	}
}

func handler(ctx context.Context, ev event) (any, error) {
	counter++
	lc, _ := lambdacontext.FromContext(ctx)
	dl, _ := ctx.Deadline()
	switch ev.Op {
	case "echo":
		return map[string]any{
			"requestId":     lc.AwsRequestID,
			"arn":           lc.InvokedFunctionArn,
			"deadlineMs":    dl.UnixMilli(),
			"clientContext": lc.ClientContext.Custom,
			"counter":       counter,
			"functionName":  lambdacontext.FunctionName,
			"memory":        lambdacontext.MemoryLimitInMB,
			"traceId":       os.Getenv("_X_AMZN_TRACE_ID"),
		}, nil
	case "log":
		fmt.Println("hello from the handler")
		fmt.Fprintln(os.Stderr, "and from stderr")
		return "logged", nil
	case "env":
		return os.Environ(), nil
	case "error":
		return nil, errors.New("boom")
	case "panic":
		panic("kaboom")
	case "sleep":
		time.Sleep(time.Duration(ev.Ms) * time.Millisecond)
		return "slept", nil
	case "spin":
		for {
			spin++
		}
	case "alloc":
		alloc(ev.MB)
		return len(held), nil
	case "big":
		return strings.Repeat("x", 7<<20), nil
	case "child-ignore-term":
		// trap "" TERM: the ignored disposition survives the exec of sleep.
		c := exec.Command("/bin/sh", "-c", `trap "" TERM; exec sleep 1000`)
		if err := c.Start(); err != nil {
			return nil, err
		}
		return c.Process.Pid, nil
	case "setsid-child":
		c := exec.Command("sleep", "1000")
		c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := c.Start(); err != nil {
			return nil, err
		}
		return c.Process.Pid, nil
	case "write-tmp":
		return nil, os.WriteFile(filepath.Join(os.TempDir(), "x"), []byte("x"), 0o600)
	case "write-code":
		return nil, os.WriteFile(filepath.Join(os.Getenv("LAMBDA_TASK_ROOT"), "x"), []byte("x"), 0o600)
	}
	return nil, fmt.Errorf("unknown op %q", ev.Op)
}

func main() {
	if code := os.Getenv("INIT_EXIT"); code != "" {
		fmt.Println("exiting during init")
		os.Exit(3)
	}
	if os.Getenv("ENABLE_SIGTERM") == "1" {
		lambda.StartWithOptions(handler, lambda.WithEnableSIGTERM(func() {
			fmt.Println("SIGTERM received")
			os.Exit(0)
		}))
		return
	}
	lambda.Start(handler)
}
