// Package process runs a real function process in a sandbox that speaks the AWS
// Lambda Runtime API (2018-06-01) and a minimal Extensions API (2020-01-01).
package process

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Limits taken from Lambda's quotas.
const (
	MaxResponseBytes = 6 * 1024 * 1024
	maxLineBytes     = 256 << 10
	maxLogBytes      = 64 << 10
	maxExtensions    = 10

	defaultInitTimeout = 10 * time.Second
	defaultMaxProcs    = 1024
	defaultMemoryMB    = 128

	// shutdown grace: Lambda gives the runtime up to 300 ms, and 2 s in all when
	// an extension is registered, before SIGKILL.
	graceNoExt = 300 * time.Millisecond
	graceExt   = 2 * time.Second

	pollBusy = 10 * time.Millisecond
	pollIdle = 200 * time.Millisecond
	// rescanEvery is how often a monitor scans /proc for the sandbox's
	// processes (between scans it reads the known ones).
	rescanEvery = 100 * time.Millisecond
)

var (
	// ErrBusy is returned by Invoke while another invocation runs in the sandbox.
	ErrBusy = errors.New("process: an invocation is already running in this sandbox")
	// ErrDead is returned by Invoke on a sandbox whose process has exited or was
	// reset: the caller cold-starts a new one.
	ErrDead = errors.New("process: sandbox is not alive")
)

// Config describes one sandbox.
type Config struct {
	CodeDir      string            // unpacked code, read-only: LAMBDA_TASK_ROOT and the cwd
	ScratchDir   string            // per-sandbox writable dir (the sandbox's /tmp); created if missing, removed on Close
	Runtime      string            // "provided.al2023", "provided.al2", "provided", "python3.x", "nodejsNN.x"
	Handler      string            // _HANDLER (python "module.func", node "file.func"; ignored by provided)
	Env          map[string]string // the user's environment variables (never logged)
	FunctionName string
	Version      string
	Region       string
	AccountID    string
	MemoryMB     int
	LogGroup     string
	LogStream    string
	InitType     string            // "on-demand" | "provisioned-concurrency"
	InitTimeout  time.Duration     // default 10 s
	BootDelay    time.Duration     // emulated microVM boot before exec
	MaxProcs     int               // processes+threads limit, default 1024
	Interpreters map[string]string // "python" / "node" -> path; default from PATH
	// Log receives every line the process writes on stdout/stderr as it arrives,
	// without its newline. It must not call back into the Sandbox.
	Log func(line []byte)
}

// Phases are the measured parts of a cold start.
type Phases struct {
	SandboxCreate time.Duration // dirs, listener, uid, BootDelay
	RuntimeInit   time.Duration // exec -> runtime's first GET /next with every extension ready
}

// Error is an init or runtime failure with Lambda's errorType.
type Error struct {
	Type    string
	Message string
	Logs    []byte // the tail of what the process wrote before it failed
}

func (e *Error) Error() string { return e.Type + ": " + e.Message }

// Body is Lambda's error document for e.
func (e *Error) Body() []byte { return errorBody(e.Type, e.Message) }

// Invocation is one event.
type Invocation struct {
	RequestID       string
	Payload         []byte
	Deadline        time.Time // Lambda-Runtime-Deadline-Ms; zero = 3 s from now
	ClientContext   string    // JSON, "" = omit
	CognitoIdentity string    // JSON, "" = omit
	TraceID         string
	InvokedARN      string // default built from Config
}

// Result is the outcome of one invocation.
type Result struct {
	Payload     []byte // response body, or Lambda's error body for errors
	ErrorType   string // "" on success
	Reset       bool   // the sandbox is dead and must not be reused
	Duration    time.Duration
	MaxMemoryMB int
	Logs        []byte
}

// Sandbox is one running function process and its Runtime API server.
type Sandbox struct {
	cfg        Config
	kind       runtimeKind
	arn        string
	ln         net.Listener
	srv        *http.Server
	cmd        *exec.Cmd
	pid        int
	uid        *uidLease
	runtimeDir string
	logR       *os.File
	wg         sync.WaitGroup
	busy       atomic.Bool
	fastPoll   atomic.Bool
	closeOnce  sync.Once

	closedCh chan struct{} // closed when shutdown begins: blocked API calls return
	deliver  chan *call
	initDone chan struct{}
	initErr  chan *Error
	exited   chan struct{}

	mu           sync.Mutex
	closing      bool
	dead         bool // reset: killed or failed, never reused
	initComplete bool
	runtimeSeen  bool
	cur          *call
	exts         map[string]*extension
	extList      []*extension
	exitErr      error
	oomMB        int
	peak         uint64
	members      []procInfo         // last scan, for the quick sample at the end of an invoke
	known        map[[2]uint64]bool // (pid,start) of every process seen in the sandbox (non-uid mode)

	logMu   sync.Mutex
	partial []byte
	sink    *logRing
	initLog logRing
}

type call struct {
	inv       Invocation
	delivered time.Time // set under s.mu by the /next handler
	done      chan struct{}
	settled   chan struct{} // the runtime called /next again after answering
	finished  bool
	settledOK bool
	answered  time.Time
	payload   []byte
	errType   string
	logs      logRing
}

type extension struct {
	id, name     string
	invoke, shut bool
	ready        bool
	events       chan []byte
}

// logRing keeps the last maxLogBytes of log lines.
type logRing struct{ b []byte }

func (r *logRing) add(line []byte) {
	r.b = append(r.b, line...)
	r.b = append(r.b, '\n')
	if over := len(r.b) - maxLogBytes; over > 0 {
		r.b = append(r.b[:0], r.b[over:]...)
	}
}

// Start creates the sandbox and waits until its runtime is ready for an event.
func Start(ctx context.Context, cfg Config) (*Sandbox, Phases, error) {
	var ph Phases
	t0 := time.Now()
	if cfg.InitTimeout <= 0 {
		cfg.InitTimeout = defaultInitTimeout
	}
	if cfg.MaxProcs <= 0 {
		cfg.MaxProcs = defaultMaxProcs
	}
	if cfg.MemoryMB <= 0 {
		cfg.MemoryMB = defaultMemoryMB
	}
	if cfg.Version == "" {
		cfg.Version = "$LATEST"
	}
	if cfg.InitType == "" {
		cfg.InitType = "on-demand"
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	if cfg.AccountID == "" {
		cfg.AccountID = "000000000000"
	}
	kind := kindOf(cfg.Runtime)
	if kind == kindNone {
		return nil, ph, fmt.Errorf("process: unsupported runtime %q", cfg.Runtime)
	}
	if cfg.CodeDir == "" || cfg.ScratchDir == "" {
		return nil, ph, errors.New("process: CodeDir and ScratchDir are required")
	}
	codeDir, err := filepath.Abs(cfg.CodeDir)
	if err != nil {
		return nil, ph, err
	}
	cfg.CodeDir = codeDir
	if cfg.ScratchDir, err = filepath.Abs(cfg.ScratchDir); err != nil {
		return nil, ph, err
	}
	s := &Sandbox{
		cfg:      cfg,
		kind:     kind,
		closedCh: make(chan struct{}),
		deliver:  make(chan *call),
		initDone: make(chan struct{}),
		initErr:  make(chan *Error, 1),
		exited:   make(chan struct{}),
		exts:     map[string]*extension{},
		known:    map[[2]uint64]bool{},
	}
	s.arn = fmt.Sprintf("arn:aws:lambda:%s:%s:function:%s", cfg.Region, cfg.AccountID, cfg.FunctionName)
	if cfg.Version != "$LATEST" {
		s.arn += ":" + cfg.Version
	}
	s.sink = &s.initLog
	fail := func(err error) (*Sandbox, Phases, error) {
		var e *Error
		if errors.As(err, &e) && e.Logs == nil {
			// What the process wrote before it failed may still be in the
			// pipe: the log reader has not necessarily run since.
			s.drainLogs()
			s.logMu.Lock()
			e.Logs = append([]byte(nil), s.initLog.b...)
			s.logMu.Unlock()
		}
		s.shutdown("FAILURE", false)
		return nil, ph, err
	}

	if os.Geteuid() == 0 {
		if s.uid, err = allocUID(); err != nil {
			return fail(err)
		}
		if !reachableByOthers(codeDir, false) {
			return fail(fmt.Errorf("process: code dir %s is not readable by the sandbox uid (it and every ancestor need o+x, the dir o+r)", codeDir))
		}
	}
	if fi, err := os.Stat(codeDir); err != nil || !fi.IsDir() {
		return fail(fmt.Errorf("process: code dir %s: not a directory", codeDir))
	}
	if err := os.MkdirAll(cfg.ScratchDir, 0o700); err != nil {
		return fail(fmt.Errorf("process: scratch dir: %w", err))
	}
	if s.uid != nil {
		if err := os.Chown(cfg.ScratchDir, s.uid.uid, s.uid.uid); err != nil {
			return fail(fmt.Errorf("process: scratch dir: %w", err))
		}
		_ = os.Chmod(cfg.ScratchDir, 0o700)
	}
	if s.runtimeDir, err = os.MkdirTemp("", "coldstart-runtime-"); err != nil {
		return fail(err)
	}
	_ = os.Chmod(s.runtimeDir, 0o755)

	argv, err := s.entrypoint()
	if err != nil {
		return fail(err)
	}

	if s.ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return fail(err)
	}
	s.srv = &http.Server{
		Handler:           s.routes(),
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = s.srv.Serve(s.ln)
	}()

	if cfg.BootDelay > 0 {
		t := time.NewTimer(cfg.BootDelay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fail(ctx.Err())
		}
	}
	ph.SandboxCreate = time.Since(t0)
	t1 := time.Now()

	r, w, err := os.Pipe()
	if err != nil {
		return fail(err)
	}
	s.logR = r
	attr := &syscall.SysProcAttr{
		Setpgid:   true,
		Pdeathsig: syscall.SIGKILL,
		Ptrace:    true,
	}
	if s.uid != nil {
		attr.Credential = &syscall.Credential{Uid: uint32(s.uid.uid), Gid: uint32(s.uid.uid), Groups: []uint32{}}
	}
	s.cmd = &exec.Cmd{
		Path:        argv[0],
		Args:        argv,
		Env:         s.environ(),
		Dir:         codeDir,
		Stdout:      w,
		Stderr:      w,
		SysProcAttr: attr,
	}
	tuid := -1
	if s.uid != nil {
		tuid = s.uid.uid
	}
	err = startStopped(s.cmd.Start, func() int { return s.cmd.Process.Pid }, cfg.MaxProcs, tuid)
	w.Close()
	if err != nil {
		if s.cmd.Process != nil {
			s.pid = s.cmd.Process.Pid
			s.wg.Add(1)
			go s.wait()
		} else {
			close(s.exited)
		}
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.ENOEXEC) {
			return fail(&Error{Type: "Runtime.InvalidEntrypoint", Message: "Error: fork/exec " + argv[0] + ": " + rootCause(err)})
		}
		return fail(fmt.Errorf("process: start: %w", err))
	}
	s.pid = s.cmd.Process.Pid
	s.fastPoll.Store(true)
	s.wg.Add(3)
	go s.wait()
	go s.readLogs()
	go s.monitor()

	timer := time.NewTimer(cfg.InitTimeout)
	defer timer.Stop()
	select {
	case <-s.initDone:
	case e := <-s.initErr:
		return fail(e)
	case <-s.exited:
		select {
		case e := <-s.initErr:
			return fail(e)
		default:
		}
		return fail(&Error{Type: "Runtime.ExitError", Message: "Error: Runtime exited with error: " + s.exitText()})
	case <-timer.C:
		return fail(&Error{Type: "Sandbox.Timedout", Message: fmt.Sprintf("Error: Init phase timed out after %.2f seconds", cfg.InitTimeout.Seconds())})
	case <-ctx.Done():
		return fail(ctx.Err())
	}
	ph.RuntimeInit = time.Since(t1)
	s.fastPoll.Store(false)
	s.logMu.Lock()
	s.sink = nil
	s.logMu.Unlock()
	return s, ph, nil
}

func rootCause(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	return err.Error()
}

// entrypoint checks what the runtime will execute and returns its argv.
func (s *Sandbox) entrypoint() ([]string, error) {
	cfg := s.cfg
	switch s.kind {
	case kindProvided:
		p := filepath.Join(cfg.CodeDir, "bootstrap")
		fi, err := os.Stat(p)
		if err != nil || fi.IsDir() {
			return nil, &Error{Type: "Runtime.InvalidEntrypoint", Message: fmt.Sprintf("Couldn't find valid bootstrap(s): [%s /opt/bootstrap]", p)}
		}
		want := os.FileMode(0o111)
		if s.uid != nil {
			want = 0o001 // the sandbox uid is "other" to the code's owner
		}
		if fi.Mode().Perm()&want == 0 {
			return nil, &Error{Type: "Runtime.InvalidEntrypoint", Message: "Error: fork/exec " + p + ": permission denied"}
		}
		return []string{p}, nil
	default:
		interp, err := interpreter(cfg.Runtime, cfg.Interpreters)
		if err != nil {
			return nil, &Error{Type: "Runtime.InvalidEntrypoint", Message: fmt.Sprintf("Error: runtime %s needs an interpreter: %v", cfg.Runtime, err)}
		}
		if err := handlerFile(s.kind, cfg.CodeDir, cfg.Handler); err != nil {
			return nil, err
		}
		name, src := "bootstrap.py", pythonClient
		if s.kind == kindNode {
			name, src = "bootstrap.js", nodeClient
		}
		client := filepath.Join(s.runtimeDir, name)
		if err := os.WriteFile(client, src, 0o644); err != nil {
			return nil, err
		}
		return []string{interp, client}, nil
	}
}

// environ is the process's whole environment: nothing of the host's leaks in.
func (s *Sandbox) environ() []string {
	cfg := s.cfg
	env := map[string]string{
		// Lambda's unreserved defaults, which a function may override.
		"LANG":            "en_US.UTF-8",
		"PATH":            "/usr/local/bin:/usr/bin/:/bin:/opt/bin",
		"LD_LIBRARY_PATH": cfg.CodeDir + ":" + cfg.CodeDir + "/lib:/opt/lib",
		"TZ":              ":UTC",
	}
	for k, v := range cfg.Env {
		env[k] = v
	}
	reserved := map[string]string{
		"_HANDLER":                        cfg.Handler,
		"AWS_REGION":                      cfg.Region,
		"AWS_DEFAULT_REGION":              cfg.Region,
		"AWS_LAMBDA_FUNCTION_NAME":        cfg.FunctionName,
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": strconv.Itoa(cfg.MemoryMB),
		"AWS_LAMBDA_FUNCTION_VERSION":     cfg.Version,
		"AWS_LAMBDA_INITIALIZATION_TYPE":  cfg.InitType,
		"AWS_LAMBDA_LOG_GROUP_NAME":       cfg.LogGroup,
		"AWS_LAMBDA_LOG_STREAM_NAME":      cfg.LogStream,
		"AWS_LAMBDA_RUNTIME_API":          s.ln.Addr().String(),
		"LAMBDA_TASK_ROOT":                cfg.CodeDir,
		"LAMBDA_RUNTIME_DIR":              s.runtimeDir,
		"TMPDIR":                          cfg.ScratchDir,
		"HOME":                            cfg.ScratchDir,
		"AWS_ACCESS_KEY_ID":               "test",
		"AWS_SECRET_ACCESS_KEY":           "test",
		"AWS_SESSION_TOKEN":               "test",
	}
	if e := executionEnv(cfg.Runtime); e != "" {
		reserved["AWS_EXECUTION_ENV"] = e
	} else {
		delete(env, "AWS_EXECUTION_ENV")
	}
	if s.kind == kindPython {
		// The code dir is read-only, and Lambda's python writes no bytecode there.
		reserved["PYTHONDONTWRITEBYTECODE"] = "1"
	}
	for k, v := range reserved {
		env[k] = v
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

func (s *Sandbox) wait() {
	defer s.wg.Done()
	err := s.cmd.Wait()
	s.mu.Lock()
	s.exitErr = err
	s.mu.Unlock()
	close(s.exited)
}

func (s *Sandbox) exitText() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.exitErr == nil {
		return "exit status 0"
	}
	return s.exitErr.Error()
}

func (s *Sandbox) hasExited() bool {
	select {
	case <-s.exited:
		return true
	default:
		return false
	}
}

// Alive reports whether the sandbox can take another invocation.
func (s *Sandbox) Alive() bool {
	if s.hasExited() {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.dead && !s.closing
}

// PID is the process id of the sandbox's runtime process (its process group id).
func (s *Sandbox) PID() int { return s.pid }

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// Invoke delivers one event and waits for its outcome.
func (s *Sandbox) Invoke(ctx context.Context, inv Invocation) (Result, error) {
	if !s.busy.CompareAndSwap(false, true) {
		return Result{}, ErrBusy
	}
	defer s.busy.Store(false)
	if !s.Alive() {
		return Result{}, ErrDead
	}
	start := time.Now()
	if inv.RequestID == "" {
		inv.RequestID = newRequestID()
	}
	if inv.Deadline.IsZero() {
		inv.Deadline = start.Add(3 * time.Second)
	}
	// The runtime learns the deadline in whole milliseconds
	// (Lambda-Runtime-Deadline-Ms): the platform's own timer uses the same
	// instant, so a handler whose context expired cannot answer "in time".
	inv.Deadline = inv.Deadline.Truncate(time.Millisecond)
	if inv.InvokedARN == "" {
		inv.InvokedARN = s.arn
	}
	// aws-lambda-go fails an invoke whose context headers are not JSON; the caller
	// is told instead of the function.
	if inv.ClientContext != "" && !json.Valid([]byte(inv.ClientContext)) {
		return Result{}, errors.New("process: ClientContext is not valid JSON")
	}
	if inv.CognitoIdentity != "" && !json.Valid([]byte(inv.CognitoIdentity)) {
		return Result{}, errors.New("process: CognitoIdentity is not valid JSON")
	}
	c := &call{inv: inv, done: make(chan struct{}), settled: make(chan struct{})}
	s.mu.Lock()
	s.cur = c
	s.peak = 0
	s.mu.Unlock()
	s.logMu.Lock()
	s.sink = &c.logs
	s.logMu.Unlock()
	s.fastPoll.Store(true)
	defer s.fastPoll.Store(false)

	res := s.run(ctx, c, start)

	s.sample(false)
	s.drainLogs()
	s.logMu.Lock()
	s.sink = nil
	res.Logs = append([]byte(nil), c.logs.b...)
	s.logMu.Unlock()
	s.mu.Lock()
	s.cur = nil
	res.MaxMemoryMB = int((s.peak + (1<<20 - 1)) >> 20)
	if s.oomMB > 0 && res.MaxMemoryMB > s.cfg.MemoryMB {
		// Lambda reports Max Memory Used = Memory Size for a function killed at its
		// limit; the overshoot is only what grew between two polls.
		res.MaxMemoryMB = s.cfg.MemoryMB
	}
	if res.Reset {
		s.dead = true
	}
	s.mu.Unlock()
	if res.Reset {
		s.killAll()
	}
	if err := ctx.Err(); err != nil && res.Reset && res.ErrorType == "" {
		return res, err
	}
	return res, nil
}

func (s *Sandbox) run(ctx context.Context, c *call, start time.Time) Result {
	id := c.inv.RequestID
	timer := time.NewTimer(time.Until(c.inv.Deadline))
	defer timer.Stop()
	timedOut := func() Result {
		s.killAll()
		secs := c.inv.Deadline.Sub(start).Seconds()
		return Result{
			ErrorType: "Sandbox.Timedout",
			Payload:   errorBody("Sandbox.Timedout", fmt.Sprintf("RequestId: %s Error: Task timed out after %.2f seconds", id, secs)),
			Reset:     true,
			Duration:  time.Since(s.deliveredAt(c, start)),
		}
	}
	exitedRes := func() Result {
		msg := "Runtime exited with error: " + s.exitText()
		s.mu.Lock()
		oom, err := s.oomMB, s.exitErr
		s.mu.Unlock()
		if err == nil {
			msg = "Runtime exited without providing a reason"
		}
		if oom > 0 {
			msg = fmt.Sprintf("Runtime exited with error: %s (out of memory: %d MB used, limit %d MB)", s.exitText(), oom, s.cfg.MemoryMB)
		}
		return Result{
			ErrorType: "Runtime.ExitError",
			Payload:   errorBody("Runtime.ExitError", fmt.Sprintf("RequestId: %s Error: %s", id, msg)),
			Reset:     true,
			Duration:  time.Since(s.deliveredAt(c, start)),
		}
	}
	cancelled := func() Result {
		s.killAll()
		return Result{Reset: true, Duration: time.Since(s.deliveredAt(c, start))}
	}

	select {
	case s.deliver <- c:
	case <-s.exited:
		return exitedRes()
	case <-timer.C:
		return timedOut()
	case <-ctx.Done():
		return cancelled()
	case <-s.closedCh:
		return Result{ErrorType: "Runtime.ExitError", Payload: errorBody("Runtime.ExitError", "RequestId: "+id+" Error: sandbox closed"), Reset: true}
	}
	select {
	case <-c.done:
	case <-s.exited:
		select {
		case <-c.done: // answered, then exited (a Go panic): the answer stands
		default:
			return exitedRes()
		}
	case <-timer.C:
		return timedOut()
	case <-ctx.Done():
		return cancelled()
	case <-s.closedCh:
		return Result{ErrorType: "Runtime.ExitError", Payload: errorBody("Runtime.ExitError", "RequestId: "+id+" Error: sandbox closed"), Reset: true}
	}
	s.mu.Lock()
	res := Result{Payload: c.payload, ErrorType: c.errType, Duration: c.answered.Sub(c.delivered)}
	late := !c.answered.Before(c.inv.Deadline)
	s.mu.Unlock()
	if late {
		// An answer at or past the deadline is Lambda's timeout, not a
		// result: a handler whose context expired (aws-lambda-go's deadline
		// is the same instant) must not win the race against the kill.
		return timedOut()
	}
	if res.ErrorType != "" {
		// After an error a runtime either asks for the next event or exits (aws-lambda-go
		// exits after a panic); which one decides whether the sandbox is reused.
		settle := time.NewTimer(min(time.Until(c.inv.Deadline), time.Second))
		defer settle.Stop()
		select {
		case <-c.settled:
		case <-s.exited:
			res.Reset = true
		case <-settle.C:
		case <-s.closedCh:
		}
	}
	return res
}

func (s *Sandbox) deliveredAt(c *call, start time.Time) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.delivered.IsZero() {
		return start
	}
	return c.delivered
}

// finish records the runtime's answer for c; false if c was already answered.
func (s *Sandbox) finish(c *call, payload []byte, errType string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.finished {
		return false
	}
	c.finished = true
	c.answered = time.Now()
	c.payload = payload
	c.errType = errType
	close(c.done)
	return true
}

// Close ends the sandbox: SHUTDOWN to extensions, SIGTERM, a grace period, then
// SIGKILL to every process the sandbox started. It is idempotent.
func (s *Sandbox) Close(reason string) {
	if reason == "" {
		reason = "SPINDOWN"
	}
	s.shutdown(reason, true)
}

func (s *Sandbox) shutdown(reason string, graceful bool) {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closing = true
		exts := append([]*extension(nil), s.extList...)
		s.mu.Unlock()
		if graceful && s.pid > 0 && !s.hasExited() {
			deadline := time.Now().Add(graceNoExt)
			if len(exts) > 0 {
				deadline = time.Now().Add(graceExt)
			}
			ev, _ := json.Marshal(map[string]any{"eventType": "SHUTDOWN", "shutdownReason": reason, "deadlineMs": deadline.UnixMilli()})
			for _, e := range exts {
				if e.shut {
					select {
					case e.events <- ev:
					default:
					}
				}
			}
			s.signalAll(unix.SIGTERM)
			t := time.NewTimer(time.Until(deadline))
			select {
			case <-s.exited:
			case <-t.C:
			}
			t.Stop()
		}
		close(s.closedCh)
		if s.pid > 0 {
			s.killAll()
		}
		if s.srv != nil {
			_ = s.srv.Close()
		} else if s.ln != nil {
			_ = s.ln.Close()
		}
		if s.pid > 0 {
			<-s.exited
		}
		if s.logR != nil {
			s.drainLogs()
			// Every writer is dead in uid mode, so the reader sees EOF; a process that
			// escaped a non-root sandbox could hold the pipe, so it is closed anyway.
			_ = s.logR.Close()
		}
		s.wg.Wait()
		if s.runtimeDir != "" {
			_ = os.RemoveAll(s.runtimeDir)
		}
		if s.cfg.ScratchDir != "" {
			_ = os.RemoveAll(s.cfg.ScratchDir)
		}
		s.uid.release()
	})
}
