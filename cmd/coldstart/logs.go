package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/nats-io/nats.go"

	"github.com/coldstart-dev/coldstart/internal/logstream"
	"github.com/coldstart-dev/coldstart/internal/natsutil"
	"github.com/coldstart-dev/coldstart/internal/secret"
)

// `coldstart logs` reads the logs stream over NATS as the read-only tool
// role: the gateway serves no logs endpoint, and the stream is where
// workers put every line. It needs what a node needs to log in (the NATS
// URL and the cluster secret); run next to `coldstart up` it finds both in
// the data directory.

func runLogs(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("logs", flag.ContinueOnError)
	gw := gatewayFlag(fs)
	follow := fs.Bool("follow", false, "keep printing new lines until interrupted")
	since := fs.String("since", "10m", "from how long ago (10m, 2h) or when (RFC 3339); all: everything kept (24 h)")
	account := fs.String("account", "", "the function's account (default: the one the credentials act as, asked of the gateway)")
	natsURL := fs.String("nats", "", "NATS URL (default $COLDSTART_NATS, else the nats-url file in --data, else nats://127.0.0.1:4222)")
	secretFile := fs.String("cluster-secret-file", "", "cluster secret (default $COLDSTART_CLUSTER_SECRET_FILE, else cluster-secret in --data)")
	data := fs.String("data", "", "data directory of a local `coldstart up` (default $COLDSTART_DATA, else ./.coldstart)")
	asJSON := fs.Bool("json", false, "print one JSON entry a line (time, account, function, version, request_id, sandbox, stream, line)")
	pos, code := parseCmd(fs, args, stdout, stderr, "coldstart logs NAME [--follow] [--since 10m]",
		"Print a function's log lines (its output, and the platform's START/END/REPORT lines), oldest first.",
		"coldstart logs hello --since 1h --follow")
	if code >= 0 {
		return code
	}
	if len(pos) != 1 {
		fmt.Fprintln(stderr, "coldstart logs: want exactly one function NAME")
		return 2
	}
	from, err := parseSince(*since, time.Now())
	if err != nil {
		fmt.Fprintln(stderr, "coldstart logs:", err)
		return 2
	}
	name := pos[0]
	acct := *account
	if acct == "" {
		// The gateway knows which account the credentials act as and
		// whether the function exists there; its ARN names the account.
		s := newSDK(*gw)
		out, err := s.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String(name)})
		if err != nil {
			fmt.Fprintf(stderr, "coldstart logs: %s (or give --account)\n", s.describe(err))
			return 1
		}
		arn := ""
		if out.Configuration != nil {
			arn = aws.ToString(out.Configuration.FunctionArn)
		}
		if acct = arnAccount(arn); acct == "" {
			fmt.Fprintf(stderr, "coldstart logs: the gateway's ARN %q names no account; give --account\n", arn)
			return 1
		}
	}
	dir := firstNonEmpty(*data, os.Getenv("COLDSTART_DATA"), "./.coldstart")
	url := firstNonEmpty(*natsURL, os.Getenv("COLDSTART_NATS"), readTrimmed(filepath.Join(dir, natsURLFile)), "nats://127.0.0.1:4222")
	nc, err := toolConn(url, firstNonEmpty(*secretFile, os.Getenv("COLDSTART_CLUSTER_SECRET_FILE")), dir)
	if err != nil {
		fmt.Fprintln(stderr, "coldstart logs:", err)
		return 1
	}
	defer nc.Close()
	readCtx := ctx
	if !*follow {
		var cancel context.CancelFunc
		readCtx, cancel = context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
	}
	enc := json.NewEncoder(stdout)
	err = logstream.Read(readCtx, nc, acct, name, from, *follow, func(e logstream.Entry) error {
		if *asJSON {
			return enc.Encode(e)
		}
		line := strings.TrimRight(e.Line, "\n")
		if e.Stream == logstream.Stderr {
			line = "[stderr] " + line
		}
		_, err := fmt.Fprintf(stdout, "%s  %s\n", e.Time.Local().Format("2006-01-02T15:04:05.000Z07:00"), line)
		return err
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(stderr, "coldstart logs: cannot read the logs stream at %s as role %s: %v\n(the cluster's NATS URL and secret are needed: --nats and --cluster-secret-file, or --data of a local `coldstart up`)\n", url, natsutil.RoleTool, err)
		return 1
	}
	return 0
}

// parseSince reads --since: a duration back from now, a timestamp, or all.
func parseSince(s string, now time.Time) (time.Time, error) {
	switch s {
	case "", "all", "0":
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("--since %q: want a duration such as 10m, an RFC 3339 time, or all", s)
}

// arnAccount is the account of arn:aws:lambda:REGION:ACCOUNT:function:NAME.
func arnAccount(arn string) string {
	parts := strings.Split(arn, ":")
	if len(parts) < 7 || parts[0] != "arn" || parts[5] != "function" {
		return ""
	}
	return parts[4]
}

// toolConn logs in to NATS as the read-only tool role, with a password
// derived from the cluster secret when there is one (a cluster without a
// secret admits anyone).
func toolConn(url, secretFile, dataDir string) (*nats.Conn, error) {
	if secretFile == "" {
		if p := filepath.Join(dataDir, "cluster-secret"); fileExists(p) {
			secretFile = p
		}
	}
	var o natsutil.ConnectOptions
	if secretFile != "" {
		sec, err := secret.ReadFile(secretFile)
		if err != nil {
			return nil, fmt.Errorf("cluster secret: %w", err)
		}
		id := "logs-" + strconv.Itoa(os.Getpid())
		o = natsutil.NodeConnectOptions(natsutil.RoleTool, id, natsutil.Password(sec, natsutil.UserName(natsutil.RoleTool, id)))
	}
	nc, err := natsutil.Connect(url, "coldstart-logs", o)
	if err != nil {
		return nil, fmt.Errorf("NATS at %s: %w (give --nats, or --data of a local `coldstart up`)", url, err)
	}
	return nc, nil
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v = strings.TrimSpace(v); v != "" {
			return v
		}
	}
	return ""
}

func readTrimmed(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
