package process

import (
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// The runtime clients for managed runtimes: small programs speaking the Runtime API
// that load the user's handler, in the role of Lambda's runtime interface clients.
var (
	//go:embed runtimes/python/bootstrap.py
	pythonClient []byte
	//go:embed runtimes/node/bootstrap.js
	nodeClient []byte
)

type runtimeKind int

const (
	kindNone runtimeKind = iota
	kindProvided
	kindPython
	kindNode
)

func kindOf(rt string) runtimeKind {
	switch {
	case rt == "provided" || rt == "provided.al2" || rt == "provided.al2023":
		return kindProvided
	case strings.HasPrefix(rt, "python3.") && len(rt) > len("python3."):
		return kindPython
	case strings.HasPrefix(rt, "nodejs") && strings.HasSuffix(rt, ".x") && len(rt) > len("nodejs.x"):
		return kindNode
	}
	return kindNone
}

// RuntimeSupported reports whether this machine can run functions of the runtime:
// provided* always, managed runtimes when their interpreter is found.
func RuntimeSupported(rt string) bool {
	switch kindOf(rt) {
	case kindProvided:
		return true
	case kindPython, kindNode:
		_, err := Interpreter(rt)
		return err == nil
	}
	return false
}

// Interpreter returns the interpreter that runs functions of a managed runtime:
// python3 or node from PATH. One installed version serves every python3.x or
// nodejsNN.x name. When the host is root, sandboxes run under their own uid, so
// an interpreter that uid cannot reach (for example under a 0700 /root, as with
// pyenv shims) is skipped in favour of the next one on PATH.
func Interpreter(rt string) (string, error) {
	return interpreter(rt, nil)
}

func interpreter(rt string, override map[string]string) (string, error) {
	var name string
	switch kindOf(rt) {
	case kindPython:
		name = "python"
	case kindNode:
		name = "node"
	case kindProvided:
		return "", fmt.Errorf("runtime %s has no interpreter", rt)
	default:
		return "", fmt.Errorf("unsupported runtime %q", rt)
	}
	if p := override[name]; p != "" {
		return p, nil
	}
	bin := map[string]string{"python": "python3", "node": "node"}[name]
	needOther := os.Geteuid() == 0
	for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
		if dir == "" {
			continue
		}
		p := filepath.Join(dir, bin)
		real, err := filepath.EvalSymlinks(p)
		if err != nil {
			continue
		}
		fi, err := os.Stat(real)
		if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			continue
		}
		if needOther && !reachableByOthers(real, true) {
			continue
		}
		// A pyenv-style shim is a shell script that needs the host's environment;
		// the resolved binary is used instead where one exists.
		return real, nil
	}
	if _, err := exec.LookPath(bin); err == nil && needOther {
		return "", fmt.Errorf("%s is on PATH but not executable by an unprivileged sandbox uid", bin)
	}
	return "", fmt.Errorf("%s not found on PATH", bin)
}

// reachableByOthers reports whether an unprivileged uid (not owner, not group) can
// reach path: every ancestor searchable by others and the file itself readable (and
// executable when exe) by others.
func reachableByOthers(path string, exe bool) bool {
	abs, err := filepath.Abs(path)
	if err != nil {
		return false
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return false
	}
	want := os.FileMode(0o004)
	if exe || fi.IsDir() {
		want |= 0o001
	}
	if fi.Mode().Perm()&want != want {
		return false
	}
	for d := filepath.Dir(abs); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return false
		}
		if d == "/" {
			return true
		}
	}
}

// executionEnv is AWS_EXECUTION_ENV, set only for managed runtimes as in Lambda.
func executionEnv(rt string) string {
	switch kindOf(rt) {
	case kindPython, kindNode:
		return "AWS_Lambda_" + rt
	}
	return ""
}

// handlerFile checks that the file a managed runtime's handler names exists in the
// code dir, so a typo fails at Start without an interpreter start.
func handlerFile(kind runtimeKind, codeDir, handler string) error {
	i := strings.LastIndexByte(handler, '.')
	if i <= 0 || i == len(handler)-1 {
		return &Error{Type: "Runtime.MalformedHandlerName", Message: fmt.Sprintf("Bad handler '%s': not enough values to unpack (expected 2, got 1)", handler)}
	}
	mod := handler[:i]
	var cands []string
	switch kind {
	case kindPython:
		base := filepath.Join(codeDir, filepath.FromSlash(strings.ReplaceAll(mod, ".", "/")))
		cands = []string{base + ".py", filepath.Join(base, "__init__.py"), base + ".pyc"}
		if m, _ := filepath.Glob(base + ".*.so"); len(m) > 0 {
			return nil
		}
	case kindNode:
		base := filepath.Join(codeDir, filepath.FromSlash(mod))
		cands = []string{base + ".js", base + ".mjs", base + ".cjs", filepath.Join(base, "index.js")}
	}
	for _, c := range cands {
		if fi, err := os.Stat(c); err == nil && !fi.IsDir() {
			return nil
		}
	}
	return &Error{Type: "Runtime.InvalidEntrypoint", Message: fmt.Sprintf("Handler file not found for handler '%s': none of %v exists", handler, cands)}
}
