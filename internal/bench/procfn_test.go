package bench

import (
	"archive/zip"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coldstart-dev/coldstart/internal/api"
)

// The process benchmarks deploy testdata/procfn, built once per test
// binary, so that every figure and its baseline run the same executable.
var procfn struct {
	once sync.Once
	dir  string // holds bootstrap; removed by TestMain
	zip  []byte
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if procfn.dir != "" {
		os.RemoveAll(procfn.dir)
	}
	os.Exit(code)
}

// procfnBuild builds testdata/procfn as a static Linux binary and zips it
// as a provided.al2023 bundle. The package's source directory is found
// from this file, so the benchmarks also work from a binary built with
// go test -c and run elsewhere (run.sh).
func procfnBuild(b *testing.B) (bin string, zipped []byte) {
	b.Helper()
	procfn.once.Do(func() {
		_, self, _, _ := runtime.Caller(0)
		dir, err := os.MkdirTemp("", "bench-procfn-")
		if err != nil {
			procfn.err = err
			return
		}
		procfn.dir = dir
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(dir, "bootstrap"), "./testdata/procfn")
		cmd.Dir = filepath.Dir(self)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			procfn.err = fmt.Errorf("building procfn: %v\n%s", err, out)
			return
		}
		exe, err := os.ReadFile(filepath.Join(dir, "bootstrap"))
		if err != nil {
			procfn.err = err
			return
		}
		var buf bytes.Buffer
		zw := zip.NewWriter(&buf)
		h := &zip.FileHeader{Name: "bootstrap", Method: zip.Deflate}
		h.SetMode(0o755)
		w, _ := zw.CreateHeader(h)
		w.Write(exe)
		if err := zw.Close(); err != nil {
			procfn.err = err
			return
		}
		procfn.zip = buf.Bytes()
	})
	if procfn.err != nil {
		b.Fatal(procfn.err)
	}
	return filepath.Join(procfn.dir, "bootstrap"), procfn.zip
}

// processFn is a function with code: procfn on provided.al2023, created
// through the gateway's Lambda API with its zip (unsigned: the default
// account), 128 MB as the synthetic functions.
func processFn(b *testing.B, name string) api.CreateFunctionInput {
	_, z := procfnBuild(b)
	return api.CreateFunctionInput{FunctionName: name, Runtime: "provided.al2023", Handler: "bootstrap", MemorySize: 128, Timeout: 30,
		Role: "arn:aws:iam::000000000000:role/bench", Code: &api.FunctionCode{ZipFile: z}}
}

// bareRuntimeAPI is the cold-start baseline's other half: the least a
// Runtime API can be, a loopback HTTP server that only notes the
// runtime's first GET /invocation/next. A process is ready, for the
// baseline as for a sandbox, when that request arrives.
type bareRuntimeAPI struct {
	addr  string
	ready chan struct{}
}

func newBareRuntimeAPI(b *testing.B) *bareRuntimeAPI {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	a := &bareRuntimeAPI{addr: ln.Addr().String(), ready: make(chan struct{}, 1)}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/2018-06-01/runtime/invocation/next" {
			a.ready <- struct{}{}
			// Hold the request as a Runtime API with no event does,
			// until the process is killed.
			<-r.Context().Done()
			return
		}
		w.WriteHeader(http.StatusNotFound)
	})}
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Close() })
	return a
}

// execReady forks and execs bin with the Runtime API's address, times it
// until its first GET /next, then kills it (untimed). This is what a
// process sandbox's cold start does minus the sandbox: no uid, rlimits,
// scratch directory, log pipe or memory monitor.
func (a *bareRuntimeAPI) execReady(b *testing.B, bin string) time.Duration {
	b.Helper()
	cmd := exec.Command(bin)
	cmd.Env = []string{"AWS_LAMBDA_RUNTIME_API=" + a.addr, "AWS_LAMBDA_FUNCTION_NAME=bare", "AWS_LAMBDA_FUNCTION_VERSION=$LATEST", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE=128", "PATH=/usr/bin:/bin"}
	cmd.Dir = filepath.Dir(bin)
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	select {
	case <-a.ready:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
		b.Fatal("bare exec: no GET /next within 10 s")
	}
	d := time.Since(t0)
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	return d
}
