package composetest

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// Gateway URLs on the host; newCluster may move them off 9000/9001.
var (
	gw1 = "http://127.0.0.1:9000"
	gw2 = "http://127.0.0.1:9001"
)

// The default project differs from a plain `docker-compose up` in the
// repository (project "main"), so that the test never touches a developer's
// cluster.
const defaultProject = "coldstart-composetest"

// workerImage is what docker-compose.yml runs the workers from.
var workerImage = envOr("COLDSTART_WORKER_IMAGE", "coldstart-worker:dev")

// nodeServices are every service docker-compose.yml starts by default:
// Redis included, never skipped (the workers keep idempotency records in it).
var nodeServices = []string{"nats", "redis", "placement1", "placement2", "placement3", "gateway1", "gateway2", "worker1", "worker2", "worker3"}

var placements = []string{"placement1", "placement2", "placement3"}

// noHealthcheck lists services without a healthcheck: running is enough.
var noHealthcheck = map[string]bool{}

const fnBody = `{"FunctionName":%q,"Runtime":"synthetic","MemorySize":128,"Timeout":3,"Coldstart":{"Duration":"20ms","ColdStart":"50ms"}}`

// TestComposeDrill brings the cluster up with the one command
// (scripts/compose-up.sh), injects every fault through `coldstart chaos
// --target compose` (nodes named by role where the drill is about a role),
// and brings it down with scripts/compose-down.sh.
func TestComposeDrill(t *testing.T) {
	start := time.Now()
	c := newCluster(t)
	tm := &timings{}
	// Registered first, so it runs last (after `down -v`).
	t.Cleanup(func() { tm.add("total (build + up + drill + down)", time.Since(start)); tm.log(t) })

	// Fresh containers and volumes every run: compose v1 breaks when it
	// recreates containers, and a previous aborted run may have left some.
	c.compose(2*time.Minute, "down", "-v", "--remove-orphans")
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := c.compose(time.Minute, "ps")
			t.Logf("docker-compose ps:\n%s", out)
			out, _ = c.compose(time.Minute, "logs", "--no-color", "--tail=60")
			t.Logf("docker-compose logs:\n%s", out)
		}
		t0 := time.Now()
		if out, err := c.script(2*time.Minute, "compose-down.sh"); err != nil {
			t.Errorf("scripts/compose-down.sh: %v\n%s", err, out)
		}
		if m, err := c.states(); err != nil || len(m) != 0 {
			t.Errorf("after scripts/compose-down.sh: containers left %v %v", m, err)
		}
		tm.add("scripts/compose-down.sh (down -v)", time.Since(t0))
	})

	// The one command up. --build: the images must be this tree's, even when
	// older ones exist (Go and Docker caches make a rebuild a few seconds).
	t0 := time.Now()
	out, err := c.script(8*time.Minute, "compose-up.sh", "--build")
	if err != nil {
		t.Fatalf("scripts/compose-up.sh --build: %v\n%s", err, out)
	}
	t.Logf("scripts/compose-up.sh:\n%s", filterBuildOutput([]byte(out)))
	for _, want := range []string{gw1, gw2, "chaos kill leader --target compose"} {
		if !strings.Contains(out, want) {
			t.Errorf("scripts/compose-up.sh output lacks %q", want)
		}
	}
	tm.add("scripts/compose-up.sh --build (images, up, every node healthy)", time.Since(t0))
	// The script said healthy: every container must be, now.
	c.waitStates(time.Second, "every node healthy after compose-up.sh", c.services, healthy)
	if _, err := os.Stat(c.cli); err != nil {
		t.Fatalf("the coldstart binary build-images.sh leaves: %v", err)
	}

	// Functions: f is invoked, coldA is kept cold for the quorum drill.
	t0 = time.Now()
	for _, name := range []string{"f", "coldL", "coldA"} {
		c.createFunction(gw1, name, 30*time.Second)
	}
	tm.add("create 3 functions", time.Since(t0))

	r := c.invoke(gw1, "f")
	c.expect(r, 200, "first invoke of f")
	if r.cold() != "true" {
		t.Errorf("first invoke of f: X-Coldstart-Cold = %q, want true", r.cold())
	}
	tm.add("first (cold) invoke of f", r.dur)
	r = c.invoke(gw1, "f")
	c.expect(r, 200, "second invoke of f")
	if r.cold() != "false" {
		t.Errorf("second invoke of f: X-Coldstart-Cold = %q, want false", r.cold())
	}
	tm.add("warm invoke of f", r.dur)
	r = c.invoke(gw2, "f")
	c.expect(r, 200, "invoke of f through gateway2")
	t.Logf("invoke of f through gateway2: cold=%s worker=%s", r.cold(), r.hdr.Get("X-Coldstart-Worker"))

	// Real code in the workers' containers: the examples that need the
	// image's python3 (a managed runtime, and a bootstrap script run
	// through /usr/bin/env).
	c.runExamples(tm)

	// --- Drill 1: kill the placement leader, found by role, under load. ---
	// Warm invocations of f never touch placement: none may fail. The
	// never-invoked coldL needs a grant: refused fast (ServiceException)
	// until a new leader is elected, then served.
	leaderSvc := placementService(c.leader(gw1, ""))
	bg := startLoad(c, gw2, "f")
	t0 = time.Now()
	victim := c.chaos("kill", "leader")
	if victim != leaderSvc {
		t.Errorf("chaos kill leader killed %s; the gateway's status named %s", victim, leaderSvc)
	}
	c.waitStates(30*time.Second, "killed leader exited", []string{victim}, exited)
	recovered := c.pollInvoke(gw1, "coldL", 15*time.Second)
	if recovered.cold() != "true" {
		t.Errorf("first successful invoke of coldL: X-Coldstart-Cold = %q, want true", recovered.cold())
	}
	tm.add("leader kill → first successful cold start", time.Since(t0))
	newLeader := c.leader(gw1, victim)
	n, fails := bg.stop()
	t.Logf("leader %s killed, new leader %s; background warm invoker: %d invocations, %d failed", victim, newLeader, n, len(fails))
	for _, f := range fails {
		t.Errorf("warm invocation of f failed across the leader kill: %s", f.what)
	}
	if got := c.chaos("restart", "leader"); got != victim {
		t.Errorf("chaos restart leader restarted %s, want the killed %s", got, victim)
	}
	c.waitStates(60*time.Second, "placement healthy after the leader's restart", placements, healthy)

	// --- Drill 2: placement loses quorum (the leader, then the next one). ---
	first := c.chaos("kill", "leader")
	second := placementService(c.leader(gw1, first))
	if got := c.chaos("kill", "leader"); got != second {
		t.Errorf("second chaos kill leader killed %s; the gateway's status named %s", got, second)
	}
	victims := []string{first, second}
	t.Logf("killed placement leaders %v", victims)
	c.waitStates(30*time.Second, "killed placement exited", victims, exited)

	var warmMax time.Duration
	for i := 0; i < 30; i++ {
		gw := gw1
		if i%3 == 2 {
			gw = gw2
		}
		r := c.invoke(gw, "f")
		c.expect(r, 200, fmt.Sprintf("warm invoke %d of f without quorum (%s)", i, gw))
		if r.cold() != "false" {
			t.Errorf("warm invoke %d of f without quorum (%s): X-Coldstart-Cold = %q, want false", i, gw, r.cold())
		}
		warmMax = max(warmMax, r.dur)
	}
	tm.add("max latency of 30 warm invokes without quorum", warmMax)

	var coldMax time.Duration
	for i := 0; i < 3; i++ {
		r := c.invoke(gw1, "coldA")
		if r.code != 500 || r.hdr.Get("X-Amzn-ErrorType") != "ServiceException" {
			t.Fatalf("cold start without quorum: got %d %q %s, want 500 ServiceException", r.code, r.hdr.Get("X-Amzn-ErrorType"), r.body)
		}
		if r.dur >= time.Second {
			t.Errorf("cold start without quorum took %v, want < 1 s", r.dur)
		}
		coldMax = max(coldMax, r.dur)
	}
	tm.add("max latency of 3 refused cold starts (500 ServiceException)", coldMax)
	t.Logf("cold start refusal body: %s", strings.TrimSpace(c.invoke(gw1, "coldA").body))

	// --- Drill 3: placement comes back; cold starts recover by themselves. ---
	t0 = time.Now()
	var back []string
	for range victims {
		back = append(back, c.chaos("restart", "placement"))
	}
	if fmt.Sprint(sortedCopy(back)) != fmt.Sprint(sortedCopy(victims)) {
		t.Errorf("chaos restart placement twice restarted %v, want the killed %v", back, victims)
	}
	tm.add("chaos restart 2 placement", time.Since(t0))
	recovered = c.pollInvoke(gw1, "coldA", 30*time.Second)
	if recovered.cold() != "true" {
		t.Errorf("first successful invoke of coldA: X-Coldstart-Cold = %q, want true", recovered.cold())
	}
	tm.add("start → first successful cold start", time.Since(t0))
	// The restarted nodes kept their Raft state (named volumes): the
	// control plane accepts writes and still knows the functions.
	c.createFunction(gw2, "afterQuorum", 30*time.Second)
	r = c.invoke(gw2, "afterQuorum")
	c.expect(r, 200, "invoke of a function created after recovery")
	c.waitStates(60*time.Second, "placement healthy again", placements, healthy)
	tm.add("start → all placement healthy", time.Since(t0))
	t.Logf("placement leader after recovery: %s", c.leader(gw1, ""))

	// --- Drill 4: kill the worker that holds f's warm sandbox. ---
	r = c.invoke(gw1, "f")
	c.expect(r, 200, "invoke of f before the worker kill")
	wid := r.hdr.Get("X-Coldstart-Worker")
	wsvc := workerService(wid)
	if wsvc == "" {
		t.Fatalf("invoke of f: X-Coldstart-Worker = %q, want w1..w3", wid)
	}

	// A sequential background invoker through gateway2 runs across the
	// kill. The invocation in flight when the worker died may fail; until
	// membership declares the worker dead, so may cold starts that placement
	// still assigns to it ("the worker chosen for the sandbox (wN) is not
	// reachable"). Nothing else may fail, and after detection nothing at all.
	bg = startLoad(c, gw2, "f")
	killAt := time.Now()
	if got := c.chaos("kill", wid); got != wsvc {
		t.Fatalf("chaos kill %s killed %s, want %s", wid, got, wsvc)
	}
	tm.add("chaos kill worker (command)", time.Since(killAt))
	c.waitStates(30*time.Second, "killed worker exited", []string{wsvc}, exited)
	diedAt := c.finishedAt(wsvc)
	c.waitNodeState(gw1, wid, "dead", 10*time.Second)
	tm.add("worker exit → gateway1's membership marks it dead", time.Since(diedAt))
	// Placement learns of the death through its own member list; wait until
	// its ledger no longer counts sandboxes the live workers do not have.
	c.waitLedger(gw1, 10*time.Second)
	detected := time.Now()
	tm.add("worker exit → placement released its sandboxes", detected.Sub(diedAt))

	var firstAfter resp
	for i := 0; i < 30; i++ {
		r := c.invoke(gw1, "f")
		c.expect(r, 200, fmt.Sprintf("invoke %d of f after %s (%s) was declared dead", i, wsvc, wid))
		if w := r.hdr.Get("X-Coldstart-Worker"); w == wid {
			t.Errorf("invoke %d of f after %s was declared dead ran on it", i, wid)
		}
		if i == 0 {
			firstAfter = r
		}
	}
	tm.add(fmt.Sprintf("first invoke of f after detection (cold=%s)", firstAfter.cold()), firstAfter.dur)
	n, fails = bg.stop()
	t.Logf("background invoker across the worker kill: %d invocations, %d failed", n, len(fails))
	unreachable := fmt.Sprintf("the worker chosen for the sandbox (%s) is not reachable", wid)
	inFlight := 0
	for _, f := range fails {
		rel := f.at.Sub(diedAt).Round(time.Millisecond)
		t.Logf("  failed, started %v relative to the worker's exit: %s", rel, f.what)
		switch {
		case f.at.After(detected):
			t.Errorf("invocation started after membership declared %s dead failed: %s", wid, f.what)
		case strings.Contains(f.what, unreachable):
			// Known gap: the gateway does not retry a cold start whose
			// assigned worker has vanished; see deployments/README.md.
		case f.at.Before(diedAt) && inFlight == 0:
			inFlight++ // was running on the worker when it died
		default:
			t.Errorf("invocation started %v relative to the worker's exit failed unexpectedly: %s", rel, f.what)
		}
	}
	c.waitStates(30*time.Second, "surviving nodes healthy", without(c.services, wsvc), healthy)

	// The killed worker comes back with empty pools.
	if got := c.chaos("restart", "worker"); got != wsvc {
		t.Errorf("chaos restart worker restarted %s, want the killed %s", got, wsvc)
	}
	c.waitStates(60*time.Second, "every node healthy after the worker's restart", c.services, healthy)
	c.waitNodeState(gw1, wid, "alive", 15*time.Second)

	// --- Drill 5: pause a worker (a zombie), resume it, check the records. ---
	c.pauseDrill(tm)

	// --- Drill 6: a graded triage drill, played by a script, on compose. ---
	c.gradedDrill(tm, "leader-loss", "placement-leader")

	// Status through the CLI-facing endpoint, for the log.
	t.Logf("cluster status after the drill:\n%s", c.statusSummary(gw1))
}

// pauseDrill freezes a worker (docker pause: the whole process stops,
// timers included) under load until membership declares it dead, resumes
// it, and has `coldstart check` judge every record of the span: no limit
// exceeded, no sandbox granted twice or running two invocations at once.
func (c *cluster) pauseDrill(tm *timings) {
	t := c.t
	chk := c.startCheck(gw1)
	bg1, bg2 := startLoad(c, gw1, "f"), startLoad(c, gw2, "f")
	c.waitLoad(10*time.Second, bg1, bg2)

	t0 := time.Now()
	svc := c.chaos("pause", "worker")
	id := workerID(svc)
	if id == "" {
		t.Fatalf("chaos pause worker paused %q, not a worker", svc)
	}
	c.waitStates(10*time.Second, "paused worker", []string{svc}, func(_ string, s state) bool { return s.paused })
	c.waitNodeState(gw1, id, "dead", 15*time.Second)
	tm.add("worker pause → membership marks it dead", time.Since(t0))
	if got := c.chaos("resume", "worker"); got != svc {
		t.Errorf("chaos resume worker resumed %s, want the paused %s", got, svc)
	}
	t1 := time.Now()
	c.waitNodeState(gw1, id, "alive", 30*time.Second)
	alive := time.Now()
	tm.add("worker resume → membership marks it alive", alive.Sub(t1))
	// Traffic after the resume must flow and succeed.
	c.waitLoad(15*time.Second, bg1, bg2)
	n1, f1 := bg1.stop()
	n2, f2 := bg2.stop()
	t.Logf("background invokers across the pause of %s (%s): %d invocations, %d failed", svc, id, n1+n2, len(f1)+len(f2))
	for _, f := range append(f1, f2...) {
		rel := f.at.Sub(t0).Round(time.Millisecond)
		if f.at.After(alive.Add(2 * time.Second)) {
			t.Errorf("invocation started %v after the pause, when %s was alive again, failed: %s", rel, id, f.what)
		} else {
			t.Logf("  failed, started %v after the pause: %s", rel, f.what)
		}
	}
	c.waitStates(30*time.Second, "every node healthy after the resume", c.services, healthy)

	rep := chk.stop()
	if !rep.OK {
		t.Errorf("coldstart check over the pause drill's records: violations:\n%s", rep.raw)
	}
	// The checker may subscribe a little after the first invocations, so
	// not every record need reach it; most must.
	if ok := n1 + n2 - len(f1) - len(f2); rep.Records == 0 || rep.Records < ok/2 {
		t.Errorf("coldstart check saw %d records of %d successful invocations", rep.Records, ok)
	}
	tm.add(fmt.Sprintf("pause drill, coldstart check over %d records (ok=%v)", rep.Records, rep.OK), time.Since(t0))
}

// runExamples deploys examples/python and examples/script-runtime through
// gateway1 and invokes each twice (cold, then warm).
func (c *cluster) runExamples(tm *timings) {
	c.t.Helper()
	out, err := exec.Command("docker", "image", "inspect", "-f", `{{index .Config.Labels "coldstart.runtimes"}}`, workerImage).Output()
	if err != nil {
		c.t.Fatalf("docker image inspect %s: %v", workerImage, err)
	}
	if !strings.Contains(string(out), "python3") {
		c.t.Logf("%s has no python3 (runtimes: %s; install Debian's python3 and rebuild): examples not run", workerImage, bytes.TrimSpace(out))
		return
	}
	for _, ex := range []struct{ name, dir, runtime, handler string }{
		{"ex-python", "python", "python3.12", "app.handler"},
		{"ex-script", "script-runtime", "provided.al2023", "bootstrap"},
	} {
		code := zipExample(c.t, filepath.Join(c.root, "examples", ex.dir))
		body, _ := json.Marshal(map[string]any{
			"FunctionName": ex.name, "Runtime": ex.runtime, "Handler": ex.handler, "Role": "arn:aws:iam::000000000000:role/x",
			"MemorySize": 128, "Timeout": 5, "Code": map[string]string{"ZipFile": base64.StdEncoding.EncodeToString(code)},
		})
		r := c.do("POST", gw1+"/2015-03-31/functions", string(body))
		c.expect(r, 201, "create "+ex.name)
		for i, what := range []string{"cold", "warm"} {
			r := c.do("POST", gw1+"/2015-03-31/functions/"+ex.name+"/invocations", `{"name":"compose"}`)
			c.expect(r, 200, fmt.Sprintf("%s invoke of %s", what, ex.name))
			var a struct {
				Message   string `json:"message"`
				RequestID string `json:"request_id"`
			}
			if fe := r.hdr.Get("X-Amz-Function-Error"); fe != "" || json.Unmarshal([]byte(r.body), &a) != nil || a.Message != "Hello, compose!" || a.RequestID == "" {
				c.t.Fatalf("%s invoke of %s: function error %q, answer %s", what, ex.name, fe, r.body)
			}
			if want := fmt.Sprint(i == 0); r.cold() != want {
				c.t.Errorf("%s invoke of %s: X-Coldstart-Cold = %q, want %s", what, ex.name, r.cold(), want)
			}
			tm.add(fmt.Sprintf("%s invoke of %s (%s)", what, ex.name, ex.runtime), r.dur)
		}
	}
}

// zipExample zips the files of an example directory (not its README) with
// their permission bits, so bootstrap stays executable.
func zipExample(t *testing.T, dir string) []byte {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		if !e.Type().IsRegular() || strings.HasSuffix(e.Name(), ".md") {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		h := &zip.FileHeader{Name: e.Name(), Method: zip.Deflate}
		h.SetMode(fi.Mode().Perm())
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(b)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// ---------------------------------------------------------------------------

type cluster struct {
	t        *testing.T
	cmd      []string // docker-compose, or docker compose
	root     string
	cli      string // the coldstart binary build-images.sh builds for the images
	project  string
	env      []string
	profiles []string
	services []string
	http     *http.Client
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("docker CLI not on PATH")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// docker-compose (v1, what Debian ships) first; the v2 plugin otherwise
	// (untested here: the build machines only have v1).
	composeCmd := []string{"docker-compose"}
	if _, err := exec.LookPath("docker-compose"); err != nil {
		if exec.CommandContext(ctx, "docker", "compose", "version").Run() != nil {
			t.Skip("neither docker-compose nor `docker compose` is available")
		}
		composeCmd = []string{"docker", "compose"}
	}
	if out, err := exec.CommandContext(ctx, "docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		t.Skipf("Docker daemon unavailable: %v %s", err, bytes.TrimSpace(out))
	}
	ports, err := gatewayPorts()
	if err != nil {
		t.Fatal(err)
	}
	if ports != [2]int{9000, 9001} {
		t.Logf("127.0.0.1:9000/9001 are in use or overridden: the gateways are published on %d and %d", ports[0], ports[1])
	}
	gw1 = fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	gw2 = fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	project := envOr("COLDSTART_COMPOSE_PROJECT", defaultProject)
	env := []string{
		"COMPOSE_PROJECT_NAME=" + project,
		"GO=" + goTool(),
		fmt.Sprintf("COLDSTART_GATEWAY1_PORT=%d", ports[0]),
		fmt.Sprintf("COLDSTART_GATEWAY2_PORT=%d", ports[1]),
	}
	cli := filepath.Join(root, "deployments", ".build", "coldstart", "coldstart")
	return &cluster{t: t, cmd: composeCmd, root: root, cli: cli, project: project, env: env, services: append([]string(nil), nodeServices...), http: &http.Client{Timeout: 10 * time.Second}}
}

// gatewayPorts returns the host ports for the two gateways:
// COLDSTART_GATEWAY_PORTS="A,B" if set, else 9000 and 9001 if free, else
// two free ports (another cluster, e.g. `coldstart up`, may hold 9000).
func gatewayPorts() ([2]int, error) {
	if v := os.Getenv("COLDSTART_GATEWAY_PORTS"); v != "" {
		var p [2]int
		if _, err := fmt.Sscanf(v, "%d,%d", &p[0], &p[1]); err != nil {
			return p, fmt.Errorf("COLDSTART_GATEWAY_PORTS=%q: want A,B: %v", v, err)
		}
		return p, nil
	}
	free := func(port int) bool {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			return false
		}
		l.Close()
		return true
	}
	if free(9000) && free(9001) {
		return [2]int{9000, 9001}, nil
	}
	var p [2]int
	for i := range p {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return p, err
		}
		defer l.Close()
		p[i] = l.Addr().(*net.TCPAddr).Port
	}
	return p, nil
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "docker-compose.yml")); err == nil {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				return dir, nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no docker-compose.yml + go.mod above the test directory")
		}
		dir = parent
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// goTool is the go command running this test, so the script needs no PATH.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

func filterBuildOutput(out []byte) string {
	var keep []string
	summary := false
	for _, l := range strings.Split(string(out), "\n") {
		summary = summary || strings.HasPrefix(l, "coldstart is up")
		if summary || strings.HasPrefix(l, "built ") || strings.HasPrefix(l, "note:") || strings.HasPrefix(l, "installing ") {
			keep = append(keep, "  "+l)
		}
	}
	return strings.Join(keep, "\n")
}

func (c *cluster) compose(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	full := append([]string(nil), c.cmd[1:]...)
	full = append(full, "-p", c.project, "-f", filepath.Join(c.root, "docker-compose.yml"))
	full = append(full, c.profiles...)
	full = append(full, args...)
	cmd := exec.CommandContext(ctx, c.cmd[0], full...)
	cmd.Dir = c.root
	cmd.Env = append(os.Environ(), c.env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// script runs scripts/NAME with the cluster's environment.
func (c *cluster) script(timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(c.root, "scripts", name), args...)
	cmd.Dir = c.root
	cmd.Env = append(os.Environ(), c.env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// chaos runs `coldstart chaos VERB NODE --target compose` and returns the
// service it acted on (its answer is "VERB SERVICE [(ALIAS)]").
func (c *cluster) chaos(verb, node string) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	t0 := time.Now()
	cmd := exec.CommandContext(ctx, c.cli, "chaos", verb, node, "--target", "compose", "--project", c.project)
	cmd.Env = append(os.Environ(), c.env...)
	out, err := cmd.CombinedOutput()
	f := strings.Fields(string(out))
	if err != nil || len(f) < 2 || f[0] != verb {
		c.t.Fatalf("coldstart chaos %s %s --target compose: %v\n%s", verb, node, err, out)
	}
	c.t.Logf("coldstart chaos %s %s --target compose: %s (%v)", verb, node, strings.TrimSpace(string(out)), time.Since(t0).Round(time.Millisecond))
	return f[1]
}

// gradedDrill runs `coldstart drill run NAME --target compose --answer
// RIGHT --json` against the cluster: its hidden fault goes through the
// compose chaos target, it must be graded correct with its signal observed
// and coldstart check passing over its records, and it must leave every
// node healthy.
func (c *cluster) gradedDrill(tm *timings, name, right string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	t0 := time.Now()
	cmd := exec.CommandContext(ctx, c.cli, "drill", "run", name, "--target", "compose", "--project", c.project,
		"--gateway", gw1, "--gateway", gw2, "--answer", right, "--json", "--data", c.t.TempDir())
	cmd.Env = append(os.Environ(), c.env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var r struct {
		Correct bool   `json:"correct"`
		Answer  string `json:"answer"`
		Right   string `json:"right"`
		Valid   bool   `json:"valid"`
		Check   bool   `json:"check"`
		Records int    `json:"records"`
	}
	if jerr := json.Unmarshal(out, &r); err != nil || jerr != nil || !r.Correct || !r.Valid || !r.Check || r.Right != right || r.Records == 0 {
		c.t.Fatalf("coldstart drill run %s --target compose --answer %s: %v %v: %+v\n%s\nstderr:\n%s", name, right, err, jerr, r, out, stderr.String())
	}
	c.t.Logf("coldstart drill run %s --target compose: correct, %d records checked (%v)", name, r.Records, time.Since(t0).Round(time.Millisecond))
	c.waitStates(60*time.Second, "every node healthy after the "+name+" drill", c.services, healthy)
	tm.add("graded drill "+name+" on compose", time.Since(t0))
}

// checkRun is a `coldstart check --follow` running in the background.
type checkRun struct {
	t   *testing.T
	cmd *exec.Cmd
	out bytes.Buffer
}

type checkReport struct {
	OK      bool `json:"ok"`
	Records int  `json:"records"`
	raw     string
}

func (c *cluster) startCheck(gw string) *checkRun {
	c.t.Helper()
	r := &checkRun{t: c.t}
	r.cmd = exec.Command(c.cli, "check", "--follow", "--gateway", gw, "--json")
	r.cmd.Env = append(os.Environ(), c.env...)
	r.cmd.Stdout = &r.out
	r.cmd.Stderr = &r.out
	if err := r.cmd.Start(); err != nil {
		c.t.Fatalf("coldstart check --follow: %v", err)
	}
	c.t.Cleanup(func() {
		if r.cmd.ProcessState == nil {
			r.cmd.Process.Kill()
			r.cmd.Wait()
		}
	})
	return r
}

// stop ends the check as Ctrl-C does (it drains, then reports) and
// returns its verdict; exit status 0 must go with ok, 1 with violations.
func (r *checkRun) stop() checkReport {
	r.t.Helper()
	r.cmd.Process.Signal(os.Interrupt)
	done := make(chan error, 1)
	go func() { done <- r.cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		r.cmd.Process.Kill()
		<-done
		r.t.Fatalf("coldstart check --follow did not stop within 30 s of SIGINT:\n%s", r.out.String())
	}
	raw := r.out.String()
	var rep checkReport
	if i := strings.Index(raw, "{"); i < 0 || json.Unmarshal([]byte(raw[i:]), &rep) != nil {
		r.t.Fatalf("coldstart check --follow: %v, no JSON report:\n%s", err, raw)
	}
	rep.raw = raw
	if code := r.cmd.ProcessState.ExitCode(); (code == 0) != rep.OK || code > 1 {
		r.t.Errorf("coldstart check --follow: exit %d with ok=%v:\n%s", code, rep.OK, raw)
	}
	return rep
}

// waitLoad waits until every load has had 5 more successful invocations.
func (c *cluster) waitLoad(timeout time.Duration, loads ...*load) {
	c.t.Helper()
	base := make([]int, len(loads))
	for i, l := range loads {
		base[i] = l.ok()
	}
	deadline := time.Now().Add(timeout)
	for {
		behind := 0
		for i, l := range loads {
			if l.ok() < base[i]+5 {
				behind++
			}
		}
		if behind == 0 {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("background load: %d of %d invokers made no progress in %v", behind, len(loads), timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func sortedCopy(in []string) []string {
	out := append([]string(nil), in...)
	sort.Strings(out)
	return out
}

// state is a container's state as `docker ps` reports it.
type state struct{ running, paused, healthy bool }

func healthy(svc string, s state) bool { return s.running && (s.healthy || noHealthcheck[svc]) }
func exited(_ string, s state) bool    { return !s.running }

func (c *cluster) states() (map[string]state, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", "ps", "-a",
		"--filter", "label=com.docker.compose.project="+c.project,
		"--format", `{{.Label "com.docker.compose.service"}}|{{.State}}|{{.Status}}`).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("docker ps: %v %s", err, out)
	}
	m := map[string]state{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.SplitN(l, "|", 3)
		if len(f) != 3 {
			continue
		}
		m[f[0]] = state{running: f[1] == "running", paused: f[1] == "paused", healthy: strings.Contains(f[2], "(healthy)")}
	}
	return m, nil
}

// waitStates polls until every service satisfies ok.
func (c *cluster) waitStates(timeout time.Duration, what string, services []string, ok func(string, state) bool) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		m, err := c.states()
		var bad []string
		if err == nil {
			for _, s := range services {
				st, found := m[s]
				if !found || !ok(s, st) {
					bad = append(bad, fmt.Sprintf("%s%+v", s, st))
				}
			}
			if len(bad) == 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s: not reached after %v: %v %v", what, timeout, bad, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

type resp struct {
	code int
	hdr  http.Header
	body string
	dur  time.Duration
	err  error
}

func (r resp) cold() string { return r.hdr.Get("X-Coldstart-Cold") }

func (c *cluster) do(method, url, body string) resp { return c.doWith(c.http, method, url, body) }

func (c *cluster) doWith(hc *http.Client, method, url, body string) resp {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return resp{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	t0 := time.Now()
	res, err := hc.Do(req)
	if err != nil {
		return resp{err: err, dur: time.Since(t0), hdr: http.Header{}}
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	return resp{code: res.StatusCode, hdr: res.Header, body: string(b), dur: time.Since(t0)}
}

func (c *cluster) invoke(gw, fn string) resp {
	return c.do("POST", gw+"/2015-03-31/functions/"+fn+"/invocations", `{"drill":true}`)
}

func (c *cluster) expect(r resp, code int, what string) {
	c.t.Helper()
	if r.err != nil {
		c.t.Fatalf("%s: %v (after %v)", what, r.err, r.dur)
	}
	if r.code != code {
		c.t.Fatalf("%s: HTTP %d %s %s, want %d", what, r.code, r.hdr.Get("X-Amzn-ErrorType"), strings.TrimSpace(r.body), code)
	}
}

// createFunction retries until the control plane accepts the function
// (right after `up` a gateway may not have seen the leader yet).
func (c *cluster) createFunction(gw, name string, timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		r := c.do("POST", gw+"/2015-03-31/functions", fmt.Sprintf(fnBody, name))
		if r.err == nil && (r.code == 201 || r.code == 200) {
			return
		}
		if r.err == nil && r.code >= 400 && r.code < 500 {
			c.t.Fatalf("create %s: HTTP %d %s", name, r.code, r.body)
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("create %s: not accepted after %v: %d %v %s", name, timeout, r.code, r.err, r.body)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// pollInvoke invokes until 200 or the deadline. Every refusal on the way
// must still be the fast, distinct one.
func (c *cluster) pollInvoke(gw, fn string, timeout time.Duration) resp {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		r := c.invoke(gw, fn)
		if r.err == nil && r.code == 200 {
			return r
		}
		// Never a hang (the client gives up after 10 s), never a 429:
		// only the fast, distinct refusal.
		if r.err != nil {
			c.t.Fatalf("invoke %s while placement recovers: %v after %v", fn, r.err, r.dur)
		}
		if r.code != 500 || r.hdr.Get("X-Amzn-ErrorType") != "ServiceException" {
			c.t.Fatalf("invoke %s while placement recovers: HTTP %d %s %s", fn, r.code, r.hdr.Get("X-Amzn-ErrorType"), r.body)
		}
		if r.dur >= time.Second {
			c.t.Errorf("invoke %s while placement recovers: refused after %v, want < 1 s", fn, r.dur)
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("invoke %s: no success after %v: %d %v %s", fn, timeout, r.code, r.err, r.body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type status struct {
	Leader string `json:"leader"`
	Nodes  []struct {
		ID, Role, State string
	} `json:"nodes"`
	Functions []struct {
		Name      string `json:"name"`
		Sandboxes int    `json:"sandboxes"` // placement's ledger
		Idle      int    `json:"idle"`      // reported by live workers
		InFlight  int    `json:"in_flight"` // reported by live workers
	} `json:"functions"`
}

func (c *cluster) status(gw string) (status, error) {
	var s status
	r := c.do("GET", gw+"/coldstart/v1/status", "")
	if r.err != nil {
		return s, r.err
	}
	if r.code != 200 {
		return s, fmt.Errorf("status: HTTP %d %s", r.code, r.body)
	}
	return s, json.Unmarshal([]byte(r.body), &s)
}

// finishedAt is when Docker saw the service's container exit.
func (c *cluster) finishedAt(svc string) time.Time {
	c.t.Helper()
	out, err := exec.Command("docker", "ps", "-aq", "--filter", "label=com.docker.compose.project="+c.project, "--filter", "label=com.docker.compose.service="+svc).Output()
	if err != nil || len(bytes.Fields(out)) != 1 {
		c.t.Fatalf("container of %s: %v %q", svc, err, out)
	}
	out, err = exec.Command("docker", "inspect", "-f", "{{.State.FinishedAt}}", string(bytes.TrimSpace(out))).Output()
	if err != nil {
		c.t.Fatalf("docker inspect %s: %v", svc, err)
	}
	at, err := time.Parse(time.RFC3339Nano, string(bytes.TrimSpace(out)))
	if err != nil {
		c.t.Fatalf("%s FinishedAt %q: %v", svc, out, err)
	}
	return at
}

// waitNodeState polls the gateway's status until node id has state.
func (c *cluster) waitNodeState(gw, id, want string, timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s, err := c.status(gw)
		if err == nil {
			for _, n := range s.Nodes {
				if n.ID == id && n.State == want {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s: node %s not %s after %v: %+v %v", gw, id, want, timeout, s.Nodes, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitLedger polls the status until, for every function, placement's
// sandbox count equals what the live workers report.
func (c *cluster) waitLedger(gw string, timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s, err := c.status(gw)
		var off []string
		if err == nil {
			for _, f := range s.Functions {
				if f.Sandboxes != f.Idle+f.InFlight {
					off = append(off, fmt.Sprintf("%s: ledger %d, workers %d+%d", f.Name, f.Sandboxes, f.Idle, f.InFlight))
				}
			}
			if len(off) == 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("placement ledger does not match the live workers after %v: %v %v", timeout, off, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// leader polls the gateway's status until it names a placement leader
// other than the service not (a gateway names a dead leader until it hears
// of the next one).
func (c *cluster) leader(gw, not string) string {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s, err := c.status(gw)
		if svc := placementService(s.Leader); err == nil && svc != "" && svc != not {
			return s.Leader
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("no placement leader (other than %q) in %s status: %+v %v", not, gw, s, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *cluster) statusSummary(gw string) string {
	s, err := c.status(gw)
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "  leader %s\n", s.Leader)
	for _, n := range s.Nodes {
		fmt.Fprintf(&b, "  %-3s %-9s %s\n", n.ID, n.Role, n.State)
	}
	for _, f := range s.Functions {
		fmt.Fprintf(&b, "  function %s: %d sandboxes\n", f.Name, f.Sandboxes)
	}
	return b.String()
}

// Node ids are fixed in docker-compose.yml: pN runs in placementN, wN in workerN.
func placementService(id string) string {
	switch id {
	case "p1", "p2", "p3":
		return "placement" + id[1:]
	}
	return ""
}

func workerID(svc string) string {
	switch svc {
	case "worker1", "worker2", "worker3":
		return "w" + svc[len("worker"):]
	}
	return ""
}

func workerService(id string) string {
	switch id {
	case "w1", "w2", "w3":
		return "worker" + id[1:]
	}
	return ""
}

func without(list []string, drop string) []string {
	var out []string
	for _, s := range list {
		if s != drop {
			out = append(out, s)
		}
	}
	return out
}

// load is a sequential background invoker.
type load struct {
	mu    sync.Mutex
	n     int
	fails []failure
	done  chan struct{}
	wg    sync.WaitGroup
}

type failure struct {
	at   time.Time
	what string
}

func startLoad(c *cluster, gw, fn string) *load {
	l := &load{done: make(chan struct{})}
	// Long enough to see how long the gateway holds an invocation whose
	// worker died under it (function timeout + 15 s today).
	slow := &http.Client{Timeout: 40 * time.Second}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		for {
			select {
			case <-l.done:
				return
			default:
			}
			t0 := time.Now()
			r := c.doWith(slow, "POST", gw+"/2015-03-31/functions/"+fn+"/invocations", `{"drill":true}`)
			l.mu.Lock()
			l.n++
			if r.err != nil || r.code != 200 {
				what := fmt.Sprintf("%v HTTP %d %s %s (%v)", r.err, r.code, r.hdr.Get("X-Amzn-ErrorType"), strings.TrimSpace(r.body), r.dur.Round(time.Millisecond))
				l.fails = append(l.fails, failure{at: t0, what: what})
			}
			l.mu.Unlock()
		}
	}()
	return l
}

// ok is the number of successful invocations so far.
func (l *load) ok() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n - len(l.fails)
}

func (l *load) stop() (int, []failure) {
	close(l.done)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n, l.fails
}

type timings struct {
	mu   sync.Mutex
	rows []struct {
		what string
		d    time.Duration
	}
}

func (t *timings) add(what string, d time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.rows = append(t.rows, struct {
		what string
		d    time.Duration
	}{what, d})
}

func (t *timings) log(tb testing.TB) {
	t.mu.Lock()
	defer t.mu.Unlock()
	w := 0
	for _, r := range t.rows {
		w = max(w, len(r.what))
	}
	var b strings.Builder
	for _, r := range t.rows {
		fmt.Fprintf(&b, "  %-*s %10v\n", w, r.what, r.d.Round(time.Millisecond))
	}
	tb.Logf("timings:\n%s", b.String())
}
