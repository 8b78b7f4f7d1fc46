package process

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// testBase holds every test's code and scratch dirs. It is world-searchable (0755)
// because sandboxes run under their own uid when the tests run as root.
var (
	testBase string
	goFnBin  string
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	base, err := os.MkdirTemp("", "coldstart-process-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(base)
	_ = os.Chmod(base, 0o755)
	testBase = base
	goFnBin = filepath.Join(base, "gofn")
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	build := exec.Command(gobin, "build", "-o", goFnBin, "./testdata/gofn")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building testdata/gofn: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// dirIn makes a fresh world-readable directory under testBase.
func dirIn(tb testing.TB, prefix string) string {
	tb.Helper()
	d, err := os.MkdirTemp(testBase, prefix)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.Chmod(d, 0o755); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// goCode is a code dir whose bootstrap is the aws-lambda-go test function.
func goCode(tb testing.TB) string {
	d := dirIn(tb, "code-")
	if err := os.Symlink(goFnBin, filepath.Join(d, "bootstrap")); err != nil {
		tb.Fatal(err)
	}
	return d
}

// codeWith writes files (name -> content) into a fresh code dir; names ending in
// "bootstrap" are made executable.
func codeWith(tb testing.TB, files map[string]string) string {
	d := dirIn(tb, "code-")
	for name, content := range files {
		mode := os.FileMode(0o644)
		if filepath.Base(name) == "bootstrap" {
			mode = 0o755
		}
		p := filepath.Join(d, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			tb.Fatal(err)
		}
		_ = os.Chmod(p, mode)
	}
	return d
}

func baseConfig(tb testing.TB, code, rt string) Config {
	return Config{
		CodeDir:      code,
		ScratchDir:   filepath.Join(dirIn(tb, "scratch-"), "tmp"),
		Runtime:      rt,
		FunctionName: "fn",
		Version:      "$LATEST",
		Region:       "eu-west-1",
		AccountID:    "123456789012",
		MemoryMB:     256,
		LogGroup:     "/aws/lambda/fn",
		LogStream:    "2026/01/01/[$LATEST]abc",
		InitTimeout:  20 * time.Second,
	}
}

// footprint identifies a sandbox's processes after it is gone: its uid (root
// mode) and its process group.
type footprint struct {
	uid  int
	pgid int
}

func footprintOf(s *Sandbox) footprint {
	f := footprint{uid: -1, pgid: s.PID()}
	if s.uid != nil {
		f.uid = s.uid.uid
	}
	return f
}

// live lists the non-zombie processes that belong to the footprint.
func (f footprint) live() []procInfo {
	var out []procInfo
	if f.uid >= 0 {
		for _, p := range procsOfUID(f.uid, true) {
			if p.state != 'Z' {
				out = append(out, p)
			}
		}
	}
	for _, pid := range listPIDs() {
		if p, ok := readStat(pid); ok && p.pgid == f.pgid && p.state != 'Z' {
			out = append(out, p)
		}
	}
	return out
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func assertGone(tb testing.TB, f footprint) {
	tb.Helper()
	waitFor(tb, 3*time.Second, "every sandbox process to be gone", func() bool { return len(f.live()) == 0 })
}

// start starts a sandbox and registers its Close and a /proc check.
func start(tb testing.TB, cfg Config) (*Sandbox, Phases) {
	tb.Helper()
	s, ph, err := Start(context.Background(), cfg)
	if err != nil {
		tb.Fatalf("Start: %v", err)
	}
	f := footprintOf(s)
	scratch := cfg.ScratchDir
	tb.Cleanup(func() {
		s.Close("SPINDOWN")
		assertGone(tb, f)
		if _, err := os.Stat(scratch); !os.IsNotExist(err) {
			tb.Errorf("scratch dir %s left behind", scratch)
		}
	})
	return s, ph
}

// startErr expects Start to fail with an *Error and checks nothing is left.
func startErr(tb testing.TB, cfg Config) *Error {
	tb.Helper()
	before := listPIDs()
	s, _, err := Start(context.Background(), cfg)
	if err == nil {
		s.Close("SPINDOWN")
		tb.Fatal("Start succeeded, want an error")
	}
	e, ok := err.(*Error)
	if !ok {
		tb.Fatalf("Start error %T %v, want *Error", err, err)
	}
	// No process started by the attempt may outlive it: the new pids since before
	// must be gone (or zombies being reaped) - checked by their pgid = own pid.
	old := map[int]bool{}
	for _, p := range before {
		old[p] = true
	}
	waitFor(tb, 3*time.Second, "failed sandbox's processes to be gone", func() bool {
		for _, pid := range listPIDs() {
			if old[pid] {
				continue
			}
			if p, ok := readStat(pid); ok && p.state != 'Z' && p.pgid == pid && p.ppid == os.Getpid() {
				return false
			}
		}
		return true
	})
	if _, err := os.Stat(cfg.ScratchDir); !os.IsNotExist(err) {
		tb.Errorf("scratch dir %s left behind after a failed Start", cfg.ScratchDir)
	}
	return e
}

func invoke(tb testing.TB, s *Sandbox, payload string, timeout time.Duration) Result {
	tb.Helper()
	r, err := s.Invoke(context.Background(), Invocation{Payload: []byte(payload), Deadline: time.Now().Add(timeout)})
	if err != nil {
		tb.Fatalf("Invoke: %v", err)
	}
	return r
}

// errDoc is Lambda's error body; stackTrace differs by runtime (objects from
// aws-lambda-go, strings from python and node).
type errDoc struct {
	Message    string          `json:"errorMessage"`
	Type       string          `json:"errorType"`
	StackTrace json.RawMessage `json:"stackTrace"`
}

func decodeErr(tb testing.TB, b []byte) errDoc {
	tb.Helper()
	var e errDoc
	if err := json.Unmarshal(b, &e); err != nil {
		tb.Fatalf("error body %q: %v", b, err)
	}
	return e
}

// logSink collects cfg.Log lines for assertions.
type logSink struct {
	mu    sync.Mutex
	lines []string
}

func (l *logSink) log(b []byte) {
	l.mu.Lock()
	l.lines = append(l.lines, string(b))
	l.mu.Unlock()
}

func (l *logSink) has(sub string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.lines {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

func readComm(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(b))
}
