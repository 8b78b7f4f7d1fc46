package main

import (
	"bytes"
	"context"
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/coldstart-dev/coldstart/internal/recordstream"
)

func TestRecordsFlags(t *testing.T) {
	parse := func(args ...string) (recordstream.Config, error) {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		var rf recordsFlags
		rf.register(fs)
		err := fs.Parse(args)
		return rf.config(), err
	}
	if c, err := parse(); err != nil || c.MaxAge != 24*time.Hour || c.MaxBytes != 512<<20 {
		t.Fatalf("defaults: %+v %v", c, err)
	}
	for _, tc := range []struct {
		args []string
		age  time.Duration
		n    int64
	}{
		{[]string{"--records-max-age", "2h", "--records-max-bytes", "1GiB"}, 2 * time.Hour, 1 << 30},
		{[]string{"--records-max-bytes", "536870912"}, 24 * time.Hour, 512 << 20},
		{[]string{"--records-max-bytes", "64M"}, 24 * time.Hour, 64 << 20},
		{[]string{"--records-max-bytes=100KiB"}, 24 * time.Hour, 100 << 10},
		{[]string{"--records-max-bytes", "3 TiB"}, 24 * time.Hour, 3 << 40},
	} {
		c, err := parse(tc.args...)
		if err != nil || c.MaxAge != tc.age || c.MaxBytes != tc.n {
			t.Errorf("%v: %+v %v", tc.args, c, err)
		}
	}
	for _, bad := range []string{"0", "-1MiB", "lots", "1.5GiB", "MiB", "9999999TiB"} {
		if _, err := parse("--records-max-bytes", bad); err == nil {
			t.Errorf("--records-max-bytes %q accepted", bad)
		}
	}
	if _, err := parse("--records-max-age", "soon"); err == nil {
		t.Error("--records-max-age soon accepted")
	}
	for n, want := range map[byteSize]string{512 << 20: "512MiB", 1 << 30: "1GiB", 1536 << 20: "1536MiB", 1000: "1000", 2048 << 40: "2048TiB"} {
		if got := n.String(); got != want {
			t.Errorf("%d: %q, want %q", int64(n), got, want)
		}
	}
}

// The gateway and up take the flags and show their defaults.
func TestRecordsFlagsInHelp(t *testing.T) {
	for _, cmd := range []string{"gateway", "up"} {
		var out, errb bytes.Buffer
		run(context.Background(), []string{cmd, "--help"}, &out, &errb)
		text := out.String() + errb.String()
		if !strings.Contains(text, "-records-max-age") || !strings.Contains(text, "-records-max-bytes") || !strings.Contains(text, "512MiB") {
			t.Errorf("coldstart %s --help lacks the records flags:\n%s", cmd, text)
		}
	}
}
