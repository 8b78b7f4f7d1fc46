package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestEveryCommandHasHelpWithAnExample: --help exits 0 and shows an example
// for every command; an unknown command or flag exits 2.
func TestEveryCommandHasHelpWithAnExample(t *testing.T) {
	for name := range commands {
		var out, errb bytes.Buffer
		code := run(context.Background(), []string{name, "--help"}, &out, &errb)
		text := out.String() + errb.String()
		if code != 0 || !strings.Contains(text, "Example") {
			t.Errorf("coldstart %s --help: exit %d, example shown %v:\n%s", name, code, strings.Contains(text, "Example"), text)
		}
	}
	for _, args := range [][]string{{"nope"}, {"worker", "--no-such-flag"}, {"function", "frobnicate"}} {
		var out, errb bytes.Buffer
		if code := run(context.Background(), args, &out, &errb); code != 2 {
			t.Errorf("coldstart %v: exit %d, want 2", args, code)
		}
	}
}
