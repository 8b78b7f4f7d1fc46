package kubernetes_test

// The kustomize base cannot be applied here (no cluster, no registry), so
// these tests render it with kubectl, decode every object strictly into the
// Kubernetes API types, and check what a cluster would otherwise reveal
// only when it fails to form: Raft peers that do not match the pod names,
// volumes not where the data is written, probes on the wrong port, a budget
// that lets the quorum go, a container running as root.

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// Names the checks rely on; README.md and the manifests use the same.
const (
	placementName = "placement"
	gatewayName   = "gateway"
	workerName    = "worker"
	natsName      = "nats"
	// coldstart's images have the binary at /coldstart and nothing else on
	// a PATH (FROM scratch): probes must name it so.
	binary = "/coldstart"
)

// kubectl returns kubectl's path. Without it the test is skipped on a
// developer's machine, but in CI (CI=true, where .ci/run installs Debian's
// kubernetes-client) its absence is a failure.
func kubectl(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("kubectl")
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("kubectl not found (.ci/run installs kubernetes-client): %v", err)
	}
	t.Skipf("kubectl not found (apt-get install -y kubernetes-client): %v", err)
	return ""
}

func render(t *testing.T, dir string) []byte {
	t.Helper()
	cmd := exec.Command(kubectl(t), "kustomize", dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v\n%s", dir, err, stderr.String())
	}
	return out
}

// cluster is the rendered base, by kind and name.
type cluster struct {
	sts map[string]*appsv1.StatefulSet
	dep map[string]*appsv1.Deployment
	svc map[string]*corev1.Service
	pdb map[string]*policyv1.PodDisruptionBudget
}

var docSep = regexp.MustCompile(`(?m)^---[ \t]*$`)

// decode splits the YAML stream and decodes each document strictly: an
// unknown field (a typo, or one this API version lacks) or an unknown kind
// is an error.
func decode(out []byte) (*cluster, error) {
	c := &cluster{sts: map[string]*appsv1.StatefulSet{}, dep: map[string]*appsv1.Deployment{}, svc: map[string]*corev1.Service{}, pdb: map[string]*policyv1.PodDisruptionBudget{}}
	n := 0
	for i, doc := range docSep.Split(string(out), -1) {
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			return nil, fmt.Errorf("document %d: %v", i, err)
		}
		var obj interface{ GetName() string }
		var put func()
		switch tm.APIVersion + " " + tm.Kind {
		case "apps/v1 StatefulSet":
			o := &appsv1.StatefulSet{}
			obj, put = o, func() { c.sts[o.Name] = o }
		case "apps/v1 Deployment":
			o := &appsv1.Deployment{}
			obj, put = o, func() { c.dep[o.Name] = o }
		case "v1 Service":
			o := &corev1.Service{}
			obj, put = o, func() { c.svc[o.Name] = o }
		case "policy/v1 PodDisruptionBudget":
			o := &policyv1.PodDisruptionBudget{}
			obj, put = o, func() { c.pdb[o.Name] = o }
		default:
			return nil, fmt.Errorf("document %d: unexpected kind %q %q (the test knows StatefulSet, Deployment, Service, PodDisruptionBudget)", i, tm.APIVersion, tm.Kind)
		}
		if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
			return nil, fmt.Errorf("%s (document %d): %v", tm.Kind, i, err)
		}
		if obj.GetName() == "" {
			return nil, fmt.Errorf("%s (document %d) has no name", tm.Kind, i)
		}
		put()
		n++
	}
	if n == 0 {
		return nil, errors.New("no objects rendered")
	}
	return c, nil
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// workload is a StatefulSet or Deployment's pod template.
type workload struct {
	kind, name string
	replicas   int32
	tmpl       *corev1.PodTemplateSpec
}

func (c *cluster) workloads() []workload {
	var ws []workload
	for _, s := range c.sts {
		ws = append(ws, workload{"StatefulSet", s.Name, replicas(s.Spec.Replicas), &s.Spec.Template})
	}
	for _, d := range c.dep {
		ws = append(ws, workload{"Deployment", d.Name, replicas(d.Spec.Replicas), &d.Spec.Template})
	}
	sort.Slice(ws, func(i, j int) bool { return ws[i].kind+ws[i].name < ws[j].kind+ws[j].name })
	return ws
}

func replicas(p *int32) int32 {
	if p == nil {
		return 1 // the API's default
	}
	return *p
}

// node is a container running coldstart: its role and flags.
type node struct {
	w     workload
	c     *corev1.Container
	role  string
	flags map[string]string
}

func (n node) String() string { return n.w.kind + "/" + n.w.name + " container " + n.c.Name }

// isColdstart tells a coldstart image (coldstart, coldstart-worker, under
// any registry and tag) from the others (Redis).
func isColdstart(image string) bool {
	name := image[strings.LastIndex(image, "/")+1:]
	name, _, _ = strings.Cut(name, "@")
	name, _, _ = strings.Cut(name, ":")
	return name == "coldstart" || name == "coldstart-worker"
}

// argv is what the container runs: its command, or the image's entrypoint
// (/coldstart) followed by its args.
func argv(c *corev1.Container) []string {
	if len(c.Command) > 0 {
		return append(slices.Clone(c.Command), c.Args...)
	}
	return append([]string{binary}, c.Args...)
}

func (c *cluster) nodes() ([]node, error) {
	var ns []node
	for _, w := range c.workloads() {
		for i := range w.tmpl.Spec.Containers {
			ct := &w.tmpl.Spec.Containers[i]
			if !isColdstart(ct.Image) {
				continue
			}
			a := argv(ct)
			if a[0] != binary || len(a) < 2 {
				return nil, fmt.Errorf("%s/%s container %s runs %q, not %s ROLE", w.kind, w.name, ct.Name, a, binary)
			}
			flags, err := parseFlags(a[2:])
			if err != nil {
				return nil, fmt.Errorf("%s/%s container %s: %v", w.kind, w.name, ct.Name, err)
			}
			ns = append(ns, node{w, ct, a[1], flags})
		}
	}
	return ns, nil
}

// parseFlags reads --name=value and --name value (a bare --name is "true").
func parseFlags(args []string) (map[string]string, error) {
	m := map[string]string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			return nil, fmt.Errorf("argument %q is not a flag", a)
		}
		name, val, ok := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !ok {
			val = "true"
			if i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
				val = args[i+1]
				i++
			}
		}
		if _, dup := m[name]; dup {
			return nil, fmt.Errorf("flag --%s given twice", name)
		}
		m[name] = val
	}
	return m, nil
}

// byRole returns the coldstart nodes of a role.
func byRole(ns []node, role string) []node {
	var out []node
	for _, n := range ns {
		if n.role == role {
			out = append(out, n)
		}
	}
	return out
}

func one(ns []node, role string) (node, error) {
	rs := byRole(ns, role)
	if len(rs) != 1 {
		return node{}, fmt.Errorf("%d containers run coldstart %s, want 1", len(rs), role)
	}
	return rs[0], nil
}

var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// expand substitutes $(VAR) as the kubelet does, from the container's env:
// literal values, and the pod's name and IP from the downward API (podName
// and a placeholder IP). A reference to a variable not defined is an
// error, where Kubernetes would pass it on verbatim.
func expand(s string, c *corev1.Container, podName string) (string, error) {
	var bad error
	out := varRef.ReplaceAllStringFunc(s, func(ref string) string {
		name := varRef.FindStringSubmatch(ref)[1]
		for _, e := range c.Env {
			if e.Name != name {
				continue
			}
			switch {
			case e.ValueFrom == nil:
				return e.Value
			case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name":
				return podName
			case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "status.podIP":
				return "192.0.2.1"
			}
			bad = fmt.Errorf("$(%s) comes from neither a value, metadata.name nor status.podIP", name)
			return ref
		}
		bad = fmt.Errorf("$(%s) in %q is not in the container's env", name, s)
		return ref
	})
	return out, bad
}

func port(addr string) (int32, error) {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(p, 10, 32)
	return int32(n), err
}

func hasPort(c *corev1.Container, p int32, proto corev1.Protocol) bool {
	for _, cp := range c.Ports {
		pr := cp.Protocol
		if pr == "" {
			pr = corev1.ProtocolTCP
		}
		if cp.ContainerPort == p && pr == proto {
			return true
		}
	}
	return false
}

func selects(sel, podLabels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if podLabels[k] != v {
			return false
		}
	}
	return true
}

// checks, each independent, so that a broken manifest names what it broke.
var checks = []struct {
	name string
	fn   func(*cluster) error
}{
	{"placement peers", checkPeers},
	{"data volumes", checkVolumes},
	{"probes", checkProbes},
	{"ports", checkPorts},
	{"wiring", checkWiring},
	{"replicas", checkReplicas},
	{"disruption budget", checkPDB},
	{"non-root", checkNonRoot},
	{"cluster secret", checkSecret},
}

// checkPeers: three placement pods whose names are the Raft ids, each
// binding --raft at its own headless-Service name, and --peers listing
// exactly those names.
func checkPeers(c *cluster) error {
	sts, ok := c.sts[placementName]
	if !ok {
		return fmt.Errorf("no StatefulSet %q", placementName)
	}
	if r := replicas(sts.Spec.Replicas); r != 3 {
		return fmt.Errorf("placement has %d replicas, want 3", r)
	}
	if sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		return fmt.Errorf("placement podManagementPolicy %q: pods started in order wait for a readiness that needs a quorum", sts.Spec.PodManagementPolicy)
	}
	svc, ok := c.svc[sts.Spec.ServiceName]
	if !ok {
		return fmt.Errorf("placement serviceName %q names no Service", sts.Spec.ServiceName)
	}
	if svc.Spec.ClusterIP != corev1.ClusterIPNone {
		return fmt.Errorf("Service %s is not headless (clusterIP %q): pods get no names of their own", svc.Name, svc.Spec.ClusterIP)
	}
	if !svc.Spec.PublishNotReadyAddresses {
		return fmt.Errorf("Service %s does not publish not-ready addresses: peers cannot resolve each other before a leader exists", svc.Name)
	}
	if !selects(svc.Spec.Selector, sts.Spec.Template.Labels) {
		return fmt.Errorf("Service %s does not select the placement pods", svc.Name)
	}
	ns, err := c.nodes()
	if err != nil {
		return err
	}
	n, err := one(ns, "placement")
	if err != nil {
		return err
	}
	if n.w.name != placementName || n.w.kind != "StatefulSet" {
		return fmt.Errorf("coldstart placement runs in %s/%s, not StatefulSet/%s", n.w.kind, n.w.name, placementName)
	}
	want := map[string]string{}
	var raftPort int32
	for i := 0; i < int(replicas(sts.Spec.Replicas)); i++ {
		pod := fmt.Sprintf("%s-%d", sts.Name, i)
		id, err := expand(n.flags["id"], n.c, pod)
		if err != nil {
			return err
		}
		if id != pod {
			return fmt.Errorf("pod %s runs with --id=%q, want its pod name", pod, id)
		}
		raft, err := expand(n.flags["raft"], n.c, pod)
		if err != nil {
			return err
		}
		host, p, err := net.SplitHostPort(raft)
		if err != nil {
			return fmt.Errorf("pod %s --raft=%q: %v", pod, raft, err)
		}
		if dns := pod + "." + svc.Name; host != dns {
			return fmt.Errorf("pod %s --raft host %q, want its DNS name %s", pod, host, dns)
		}
		rp, _ := strconv.Atoi(p)
		raftPort = int32(rp)
		want[id] = raft
	}
	peers := n.flags["peers"]
	if strings.Contains(peers, "$(") {
		return fmt.Errorf("--peers=%q must be the same literal list in every pod", peers)
	}
	got := map[string]string{}
	for _, p := range strings.Split(peers, ",") {
		id, addr, ok := strings.Cut(p, "=")
		if !ok {
			return fmt.Errorf("--peers entry %q is not id=host:port", p)
		}
		got[id] = addr
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		return fmt.Errorf("--peers=%s, want the pods' own ids and --raft addresses %v", peers, want)
	}
	if !hasPort(n.c, raftPort, corev1.ProtocolTCP) {
		return fmt.Errorf("placement has no containerPort %d for Raft", raftPort)
	}
	return nil
}

// checkVolumes: each StatefulSet's data directory (--data, --store;
// Redis's --dir) is a mount of one of its volumeClaimTemplates, so it
// outlives the pod.
func checkVolumes(c *cluster) error {
	for _, name := range []string{placementName, natsName, "redis"} {
		sts, ok := c.sts[name]
		if !ok {
			return fmt.Errorf("no StatefulSet %q", name)
		}
		if len(sts.Spec.Template.Spec.Containers) != 1 {
			return fmt.Errorf("StatefulSet %s has %d containers, want 1", name, len(sts.Spec.Template.Spec.Containers))
		}
		ct := &sts.Spec.Template.Spec.Containers[0]
		var dir string
		if isColdstart(ct.Image) {
			a := argv(ct)
			f, err := parseFlags(a[min(2, len(a)):])
			if err != nil {
				return err
			}
			dir = f["data"] + f["store"]
		} else if i := slices.Index(ct.Args, "--dir"); i >= 0 && i+1 < len(ct.Args) {
			dir = ct.Args[i+1]
		}
		if dir == "" {
			return fmt.Errorf("StatefulSet %s: no data directory flag", name)
		}
		mounted := ""
		for _, m := range ct.VolumeMounts {
			if filepath.Clean(m.MountPath) == filepath.Clean(dir) {
				mounted = m.Name
			}
		}
		if mounted == "" {
			return fmt.Errorf("StatefulSet %s writes to %s, where nothing is mounted", name, dir)
		}
		if !slices.ContainsFunc(sts.Spec.VolumeClaimTemplates, func(p corev1.PersistentVolumeClaim) bool { return p.Name == mounted }) {
			return fmt.Errorf("StatefulSet %s mounts %q at %s, which is no volumeClaimTemplate", name, mounted, dir)
		}
	}
	return nil
}

// listenAddr is the address a role serves the port its probes check.
func listenAddr(n node) (string, error) {
	flag := map[string]string{"placement": "http", "worker": "http", "gateway": "listen", "nats": "listen"}[n.role]
	if flag == "" {
		return "", fmt.Errorf("%s: unknown role %q", n, n.role)
	}
	addr := n.flags[flag]
	if addr == "" {
		return "", fmt.Errorf("%s: coldstart %s without --%s", n, n.role, flag)
	}
	return addr, nil
}

// checkProbes: every coldstart container has exec readiness and liveness
// probes running `/coldstart healthcheck` against 127.0.0.1 at the port its
// flags serve, which must then be bound where 127.0.0.1 reaches it.
func checkProbes(c *cluster) error {
	ns, err := c.nodes()
	if err != nil {
		return err
	}
	if len(ns) == 0 {
		return errors.New("no coldstart containers")
	}
	for _, n := range ns {
		addr, err := listenAddr(n)
		if err != nil {
			return err
		}
		host, p, err := net.SplitHostPort(addr)
		if err != nil {
			return fmt.Errorf("%s: %v", n, err)
		}
		if host != "0.0.0.0" && host != "127.0.0.1" && host != "" {
			return fmt.Errorf("%s listens on %s, which a probe on 127.0.0.1 does not reach", n, addr)
		}
		for kind, pr := range map[string]*corev1.Probe{"readiness": n.c.ReadinessProbe, "liveness": n.c.LivenessProbe} {
			if pr == nil || pr.Exec == nil {
				return fmt.Errorf("%s: no exec %s probe", n, kind)
			}
			cmd := pr.Exec.Command
			if len(cmd) < 2 || cmd[0] != binary || cmd[1] != "healthcheck" {
				return fmt.Errorf("%s: %s probe runs %q, not %s healthcheck", n, kind, cmd, binary)
			}
			f, err := parseFlags(cmd[2:])
			if err != nil {
				return fmt.Errorf("%s: %s probe: %v", n, kind, err)
			}
			target := f["tcp"]
			if target == "" {
				u, err := url.Parse(f["url"])
				if err != nil || f["url"] == "" {
					return fmt.Errorf("%s: %s probe has neither --tcp nor a valid --url", n, kind)
				}
				if u.Path != "/healthz" {
					return fmt.Errorf("%s: %s probe asks %s, not /healthz", n, kind, u)
				}
				target = u.Host
			}
			th, tp, err := net.SplitHostPort(target)
			if err != nil {
				return fmt.Errorf("%s: %s probe target %q: %v", n, kind, target, err)
			}
			if th != "127.0.0.1" || tp != p {
				return fmt.Errorf("%s: %s probe checks %s, but the node serves %s", n, kind, target, addr)
			}
		}
	}
	for _, w := range c.workloads() {
		for _, ct := range w.tmpl.Spec.Containers {
			if ct.ReadinessProbe == nil || ct.LivenessProbe == nil {
				return fmt.Errorf("%s/%s container %s lacks a readiness or liveness probe", w.kind, w.name, ct.Name)
			}
		}
	}
	return nil
}

// checkPorts: every port a coldstart node binds by flag is a containerPort
// (gossip on TCP and UDP), and every Service's targetPort is a port of the
// pods it selects.
func checkPorts(c *cluster) error {
	ns, err := c.nodes()
	if err != nil {
		return err
	}
	for _, n := range ns {
		for _, f := range []string{"http", "listen", "raft", "gossip"} {
			v, ok := n.flags[f]
			if !ok {
				continue
			}
			v, err := expand(v, n.c, n.w.name+"-0")
			if err != nil {
				return fmt.Errorf("%s: %v", n, err)
			}
			p, err := port(v)
			if err != nil {
				return fmt.Errorf("%s --%s=%s: %v", n, f, v, err)
			}
			if !hasPort(n.c, p, corev1.ProtocolTCP) {
				return fmt.Errorf("%s binds --%s=%s but declares no TCP containerPort %d", n, f, v, p)
			}
			if f == "gossip" && !hasPort(n.c, p, corev1.ProtocolUDP) {
				return fmt.Errorf("%s gossips on %s but declares no UDP containerPort %d (memberlist probes over UDP)", n, v, p)
			}
		}
	}
	for _, s := range c.svc {
		var pods []workload
		for _, w := range c.workloads() {
			if selects(s.Spec.Selector, w.tmpl.Labels) {
				pods = append(pods, w)
			}
		}
		if len(pods) == 0 {
			return fmt.Errorf("Service %s selects no pods", s.Name)
		}
		for _, sp := range s.Spec.Ports {
			for _, w := range pods {
				if !targets(w.tmpl, sp) {
					return fmt.Errorf("Service %s port %s (%d -> %s) is no containerPort of %s/%s", s.Name, sp.Name, sp.Port, sp.TargetPort.String(), w.kind, w.name)
				}
			}
		}
	}
	return nil
}

func targets(t *corev1.PodTemplateSpec, sp corev1.ServicePort) bool {
	proto := sp.Protocol
	if proto == "" {
		proto = corev1.ProtocolTCP
	}
	tp := sp.TargetPort
	if tp.Type == intstr.Int && tp.IntVal == 0 {
		tp = intstr.FromInt32(sp.Port) // the API's default
	}
	for _, ct := range t.Spec.Containers {
		for _, cp := range ct.Ports {
			pr := cp.Protocol
			if pr == "" {
				pr = corev1.ProtocolTCP
			}
			if pr != proto {
				continue
			}
			if (tp.Type == intstr.String && cp.Name == tp.StrVal) || (tp.Type == intstr.Int && cp.ContainerPort == tp.IntVal) {
				return true
			}
		}
	}
	return false
}

// checkWiring: --nats and --redis name Services on the ports those
// Services serve, and --join lists placement pods at their gossip port.
func checkWiring(c *cluster) error {
	ns, err := c.nodes()
	if err != nil {
		return err
	}
	pl, err := one(ns, "placement")
	if err != nil {
		return err
	}
	sts := c.sts[pl.w.name]
	gossip, err := expand(pl.flags["gossip"], pl.c, pl.w.name+"-0")
	if err != nil {
		return err
	}
	gp, err := port(gossip)
	if err != nil {
		return err
	}
	seeds := map[string]bool{}
	for i := 0; i < int(replicas(sts.Spec.Replicas)); i++ {
		seeds[net.JoinHostPort(fmt.Sprintf("%s-%d.%s", sts.Name, i, sts.Spec.ServiceName), strconv.Itoa(int(gp)))] = true
	}
	for _, n := range ns {
		if n.role == "nats" {
			continue
		}
		for _, f := range []string{"nats", "redis"} {
			if f == "redis" && n.role != "worker" {
				continue
			}
			u, err := url.Parse(n.flags[f])
			if err != nil || n.flags[f] == "" {
				return fmt.Errorf("%s: --%s=%q is not a URL", n, f, n.flags[f])
			}
			if err := servesPort(c, u.Hostname(), u.Port()); err != nil {
				return fmt.Errorf("%s --%s=%s: %v", n, f, u, err)
			}
		}
		// memberlist binds 0.0.0.0, which it cannot advertise: the pod's
		// own IP (or a name resolving to it) must be given, at the bound port.
		bind, err := port(n.flags["gossip"])
		if err != nil {
			return fmt.Errorf("%s --gossip=%q: %v", n, n.flags["gossip"], err)
		}
		adv, err := expand(n.flags["advertise"], n.c, n.w.name+"-0")
		if err != nil {
			return fmt.Errorf("%s: %v", n, err)
		}
		ah, ap, err := net.SplitHostPort(adv)
		if err != nil {
			return fmt.Errorf("%s --advertise=%q: %v", n, adv, err)
		}
		if ap != strconv.Itoa(int(bind)) {
			return fmt.Errorf("%s advertises port %s but gossips on %d", n, ap, bind)
		}
		if ah != "192.0.2.1" && !(n.w.kind == "StatefulSet" && ah == n.w.name+"-0."+c.sts[n.w.name].Spec.ServiceName) {
			return fmt.Errorf("%s advertises %q, not the pod's own address ($(POD_IP) from status.podIP)", n, ah)
		}
		join := strings.Split(n.flags["join"], ",")
		if len(join) == 0 || join[0] == "" {
			return fmt.Errorf("%s: no --join seeds", n)
		}
		for _, s := range join {
			if !seeds[s] {
				return fmt.Errorf("%s: --join seed %q is no placement pod's gossip address", n, s)
			}
		}
	}
	if redis, ok := c.sts["redis"]; ok {
		a := redis.Spec.Template.Spec.Containers[0].Args
		if i := slices.Index(a, "--port"); i >= 0 && i+1 < len(a) && a[i+1] != "6379" {
			return fmt.Errorf("Redis runs on port %s", a[i+1])
		}
	}
	return nil
}

// servesPort: a Service named host whose port p reaches a container port.
func servesPort(c *cluster, host, p string) error {
	s, ok := c.svc[host]
	if !ok {
		return fmt.Errorf("no Service %q", host)
	}
	for _, sp := range s.Spec.Ports {
		if strconv.Itoa(int(sp.Port)) == p {
			return nil
		}
	}
	return fmt.Errorf("Service %s has no port %s", host, p)
}

// checkReplicas: the cluster's shape: 2 gateways, 3 workers, and one NATS
// server (`coldstart nats` cannot cluster; two would be two separate
// servers).
func checkReplicas(c *cluster) error {
	for name, want := range map[string]int32{gatewayName: 2, workerName: 3} {
		d, ok := c.dep[name]
		if !ok {
			return fmt.Errorf("no Deployment %q", name)
		}
		if r := replicas(d.Spec.Replicas); r != want {
			return fmt.Errorf("Deployment %s has %d replicas, want %d", name, r, want)
		}
	}
	ns, err := c.nodes()
	if err != nil {
		return err
	}
	for role, w := range map[string]string{"gateway": gatewayName, "worker": workerName} {
		n, err := one(ns, role)
		if err != nil {
			return err
		}
		if n.w.name != w {
			return fmt.Errorf("coldstart %s runs in %s, not Deployment %s", role, n, w)
		}
	}
	n, err := one(ns, "nats")
	if err != nil {
		return err
	}
	if n.w.replicas != 1 {
		return fmt.Errorf("%s: %d NATS replicas; coldstart nats cannot form a cluster", n, n.w.replicas)
	}
	return nil
}

// checkPDB: one budget selects exactly the placement pods and keeps a Raft
// quorum of them (2 of 3) through voluntary disruptions.
func checkPDB(c *cluster) error {
	sts, ok := c.sts[placementName]
	if !ok {
		return fmt.Errorf("no StatefulSet %q", placementName)
	}
	total := replicas(sts.Spec.Replicas)
	quorum := total/2 + 1
	found := 0
	for _, p := range c.pdb {
		sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		if err != nil {
			return fmt.Errorf("PodDisruptionBudget %s: %v", p.Name, err)
		}
		if p.Spec.Selector == nil || sel.Empty() {
			return fmt.Errorf("PodDisruptionBudget %s selects every pod", p.Name)
		}
		var selected []string
		for _, w := range c.workloads() {
			if sel.Matches(labels.Set(w.tmpl.Labels)) {
				selected = append(selected, w.kind+"/"+w.name)
			}
		}
		if !slices.Contains(selected, "StatefulSet/"+placementName) {
			continue
		}
		found++
		if len(selected) != 1 {
			return fmt.Errorf("PodDisruptionBudget %s selects %v, not only the placement pods", p.Name, selected)
		}
		var keep int32
		switch {
		case p.Spec.MinAvailable != nil && p.Spec.MaxUnavailable != nil:
			return fmt.Errorf("PodDisruptionBudget %s sets both minAvailable and maxUnavailable", p.Name)
		case p.Spec.MinAvailable != nil && p.Spec.MinAvailable.Type == intstr.Int:
			keep = p.Spec.MinAvailable.IntVal
		case p.Spec.MaxUnavailable != nil && p.Spec.MaxUnavailable.Type == intstr.Int:
			keep = total - p.Spec.MaxUnavailable.IntVal
		default:
			return fmt.Errorf("PodDisruptionBudget %s: want an integer minAvailable or maxUnavailable", p.Name)
		}
		if keep < quorum || keep >= total {
			return fmt.Errorf("PodDisruptionBudget %s keeps %d of %d placement pods; a quorum is %d, and keeping all blocks every drain", p.Name, keep, total, quorum)
		}
	}
	if found != 1 {
		return fmt.Errorf("%d PodDisruptionBudgets select the placement pods, want 1", found)
	}
	return nil
}

// checkNonRoot: every container of every pod runs as a non-zero uid with
// runAsNonRoot (so the kubelet refuses an image that would run as root)
// and cannot gain privileges.
func checkNonRoot(c *cluster) error {
	for _, w := range c.workloads() {
		ps := w.tmpl.Spec.SecurityContext
		if ps == nil {
			ps = &corev1.PodSecurityContext{}
		}
		all := append(slices.Clone(w.tmpl.Spec.InitContainers), w.tmpl.Spec.Containers...)
		for _, ct := range all {
			cs := ct.SecurityContext
			if cs == nil {
				cs = &corev1.SecurityContext{}
			}
			nonRoot, uid := ps.RunAsNonRoot, ps.RunAsUser
			if cs.RunAsNonRoot != nil {
				nonRoot = cs.RunAsNonRoot
			}
			if cs.RunAsUser != nil {
				uid = cs.RunAsUser
			}
			where := fmt.Sprintf("%s/%s container %s", w.kind, w.name, ct.Name)
			if nonRoot == nil || !*nonRoot {
				return fmt.Errorf("%s: runAsNonRoot is not true", where)
			}
			if uid == nil || *uid == 0 {
				return fmt.Errorf("%s: no non-zero runAsUser", where)
			}
			if cs.AllowPrivilegeEscalation == nil || *cs.AllowPrivilegeEscalation {
				return fmt.Errorf("%s: allowPrivilegeEscalation is not false", where)
			}
			if cs.Privileged != nil && *cs.Privileged {
				return fmt.Errorf("%s: privileged", where)
			}
		}
	}
	return nil
}

// checkSecret: every coldstart node reads the cluster secret
// (COLDSTART_CLUSTER_SECRET_FILE, as in docker-compose.yml) from a file a
// Secret volume puts there; a node without it could not log in to NATS.
func checkSecret(c *cluster) error {
	ns, err := c.nodes()
	if err != nil {
		return err
	}
	for _, n := range ns {
		path := n.flags["cluster-secret-file"]
		for _, e := range n.c.Env {
			if e.Name == "COLDSTART_CLUSTER_SECRET_FILE" {
				path = e.Value
			}
		}
		if path == "" {
			return fmt.Errorf("%s has no cluster secret file", n)
		}
		ok := false
		for _, m := range n.c.VolumeMounts {
			rel, err := filepath.Rel(m.MountPath, path)
			if err != nil || strings.HasPrefix(rel, "..") {
				continue
			}
			for _, v := range n.w.tmpl.Spec.Volumes {
				if v.Name != m.Name || v.Secret == nil {
					continue
				}
				if len(v.Secret.Items) == 0 {
					ok = !strings.Contains(rel, "/")
				}
				for _, it := range v.Secret.Items {
					ok = ok || it.Path == rel
				}
			}
		}
		if !ok {
			return fmt.Errorf("%s reads the cluster secret from %s, which no Secret volume provides", n, path)
		}
	}
	return nil
}

// composeFlags returns the flags docker-compose.yml gives each role
// (including healthcheck, from the healthchecks).
func composeFlags(t *testing.T) map[string]map[string]bool {
	t.Helper()
	b, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Services map[string]struct {
			Command     []string `json:"command"`
			Healthcheck struct {
				Test []string `json:"test"`
			} `json:"healthcheck"`
		} `json:"services"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	out := map[string]map[string]bool{}
	add := func(role string, args []string) {
		if out[role] == nil {
			out[role] = map[string]bool{}
		}
		for _, a := range args {
			if strings.HasPrefix(a, "--") {
				name, _, _ := strings.Cut(a[2:], "=")
				out[role][name] = true
			}
		}
	}
	for _, s := range f.Services {
		if len(s.Command) > 0 && !strings.HasPrefix(s.Command[0], "-") {
			add(s.Command[0], s.Command[1:])
		}
		if t := s.Healthcheck.Test; len(t) > 2 && t[1] == binary && t[2] == "healthcheck" {
			add("healthcheck", t[3:])
		}
	}
	if len(out["placement"]) == 0 || len(out["healthcheck"]) == 0 {
		t.Fatalf("docker-compose.yml: found no placement or healthcheck flags in %v", out)
	}
	return out
}

// checkComposeFlags: the manifests give each role only flags that
// docker-compose.yml gives it, so both clusters are configured alike.
func checkComposeFlags(c *cluster, compose map[string]map[string]bool) error {
	ns, err := c.nodes()
	if err != nil {
		return err
	}
	for _, n := range ns {
		for f := range n.flags {
			if !compose[n.role][f] {
				return fmt.Errorf("%s: coldstart %s --%s, a flag docker-compose.yml does not give it", n, n.role, f)
			}
		}
		for _, pr := range []*corev1.Probe{n.c.ReadinessProbe, n.c.LivenessProbe} {
			if pr == nil || pr.Exec == nil || len(pr.Exec.Command) < 2 {
				continue
			}
			f, err := parseFlags(pr.Exec.Command[2:])
			if err != nil {
				return err
			}
			for name := range f {
				if !compose["healthcheck"][name] {
					return fmt.Errorf("%s: probe uses healthcheck --%s, which docker-compose.yml does not", n, name)
				}
			}
		}
	}
	return nil
}

func TestRender(t *testing.T) {
	c, err := decode(render(t, "."))
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range checks {
		if err := ch.fn(c); err != nil {
			t.Errorf("%s: %v", ch.name, err)
		}
	}
	if err := checkComposeFlags(c, composeFlags(t)); err != nil {
		t.Errorf("flags as in compose: %v", err)
	}
}

// TestImagesRetarget renders an overlay that moves the three images to a
// registry: every container must follow, so the base's images: entries
// cover all of them.
func TestImagesRetarget(t *testing.T) {
	kubectl(t)
	base, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rel, err := filepath.Rel(dir, base)
	if err != nil {
		t.Fatal(err)
	}
	// bases: rather than resources: kubectl 1.20's kustomize takes
	// directories only there (current ones warn, and accept it).
	k := "bases:\n  - " + rel + "\nimages:\n"
	for _, im := range []string{"coldstart", "coldstart-worker", "coldstart-redis"} {
		k += fmt.Sprintf("  - name: %s\n    newName: registry.example.com/team/%s\n    newTag: v9\n", im, im)
	}
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := decode(render(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, w := range c.workloads() {
		for _, ct := range append(slices.Clone(w.tmpl.Spec.InitContainers), w.tmpl.Spec.Containers...) {
			n++
			if !strings.HasPrefix(ct.Image, "registry.example.com/team/") || !strings.HasSuffix(ct.Image, ":v9") {
				t.Errorf("%s/%s container %s keeps image %q: no images: entry of the base covers it", w.kind, w.name, ct.Name, ct.Image)
			}
		}
	}
	if n == 0 {
		t.Fatal("no containers rendered")
	}
	// The checks still hold for the retargeted images.
	for _, ch := range checks {
		if err := ch.fn(c); err != nil {
			t.Errorf("%s: %v", ch.name, err)
		}
	}
}

// TestChecksCatchBreakage breaks the rendered base one way at a time and
// requires the check meant to notice to fail, so that no check passes
// vacuously.
func TestChecksCatchBreakage(t *testing.T) {
	out := render(t, ".")
	compose := composeFlags(t)
	placement := func(c *cluster) *corev1.Container { return &c.sts[placementName].Spec.Template.Spec.Containers[0] }
	gateway := func(c *cluster) *corev1.Container { return &c.dep[gatewayName].Spec.Template.Spec.Containers[0] }
	worker := func(c *cluster) *corev1.Container { return &c.dep[workerName].Spec.Template.Spec.Containers[0] }
	setArg := func(ct *corev1.Container, flag, val string) {
		for i, a := range ct.Args {
			if strings.HasPrefix(a, "--"+flag+"=") {
				ct.Args[i] = "--" + flag + "=" + val
				return
			}
		}
		ct.Args = append(ct.Args, "--"+flag+"="+val)
	}
	i32 := func(n int32) *int32 { return &n }
	cases := []struct {
		check string
		yaml  func(string) string // breaks the rendered text (decoding must fail)
		obj   func(*cluster)
	}{
		{check: "decode", yaml: func(s string) string { return s + "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n" }},
		{check: "decode", yaml: func(s string) string {
			return strings.Replace(s, "  replicas: 3\n", "  replicas: 3\n  replicaz: 3\n", 1)
		}},
		{check: "placement peers", obj: func(c *cluster) { c.sts[placementName].Spec.Replicas = i32(5) }},
		{check: "placement peers", obj: func(c *cluster) {
			setArg(placement(c), "peers", "placement-0=placement-0.placement:7300,placement-1=placement-1.placement:7300,placement-3=placement-3.placement:7300")
		}},
		{check: "placement peers", obj: func(c *cluster) { setArg(placement(c), "id", "p1") }},
		{check: "placement peers", obj: func(c *cluster) { setArg(placement(c), "raft", "$(POD_IP):7300") }},
		{check: "placement peers", obj: func(c *cluster) { c.svc[placementName].Spec.ClusterIP = "" }},
		{check: "placement peers", obj: func(c *cluster) { c.svc[placementName].Spec.PublishNotReadyAddresses = false }},
		{check: "placement peers", obj: func(c *cluster) { c.sts[placementName].Spec.PodManagementPolicy = appsv1.OrderedReadyPodManagement }},
		{check: "data volumes", obj: func(c *cluster) { setArg(placement(c), "data", "/var/lib/placement") }},
		{check: "data volumes", obj: func(c *cluster) { c.sts[natsName].Spec.VolumeClaimTemplates[0].Name = "store" }},
		{check: "probes", obj: func(c *cluster) { placement(c).ReadinessProbe.Exec.Command[3] = "http://127.0.0.1:8081/healthz" }},
		{check: "probes", obj: func(c *cluster) { worker(c).LivenessProbe.Exec.Command = []string{"/coldstart", "status"} }},
		{check: "probes", obj: func(c *cluster) { gateway(c).LivenessProbe = nil }},
		{check: "probes", obj: func(c *cluster) { setArg(gateway(c), "listen", "0.0.0.0:9001") }},
		{check: "probes", obj: func(c *cluster) { setArg(gateway(c), "listen", "$(POD_IP):9000") }},
		{check: "probes", obj: func(c *cluster) { c.sts["redis"].Spec.Template.Spec.Containers[0].ReadinessProbe = nil }},
		{check: "ports", obj: func(c *cluster) { placement(c).Ports = placement(c).Ports[1:] }},
		{check: "ports", obj: func(c *cluster) { worker(c).Ports = worker(c).Ports[:2] }},
		{check: "ports", obj: func(c *cluster) { c.svc[gatewayName].Spec.Ports[0].TargetPort = intstr.FromString("api") }},
		{check: "ports", obj: func(c *cluster) { c.svc[natsName].Spec.Selector["app.kubernetes.io/component"] = "natz" }},
		{check: "wiring", obj: func(c *cluster) { setArg(worker(c), "nats", "nats://nats-server:4222") }},
		{check: "wiring", obj: func(c *cluster) { setArg(worker(c), "redis", "redis://redis:6380") }},
		{check: "wiring", obj: func(c *cluster) { setArg(gateway(c), "join", "placement-0.placement:7947") }},
		{check: "replicas", obj: func(c *cluster) { c.dep[gatewayName].Spec.Replicas = i32(1) }},
		{check: "replicas", obj: func(c *cluster) { c.dep[workerName].Spec.Replicas = nil }},
		{check: "replicas", obj: func(c *cluster) { c.sts[natsName].Spec.Replicas = i32(3) }},
		{check: "disruption budget", obj: func(c *cluster) { v := intstr.FromInt32(2); c.pdb[placementName].Spec.MaxUnavailable = &v }},
		{check: "disruption budget", obj: func(c *cluster) {
			v := intstr.FromInt32(3)
			c.pdb[placementName].Spec.MaxUnavailable, c.pdb[placementName].Spec.MinAvailable = nil, &v
		}},
		{check: "disruption budget", obj: func(c *cluster) {
			c.pdb[placementName].Spec.Selector.MatchLabels["app.kubernetes.io/component"] = "worker"
		}},
		{check: "disruption budget", obj: func(c *cluster) {
			delete(c.pdb[placementName].Spec.Selector.MatchLabels, "app.kubernetes.io/component")
		}},
		{check: "non-root", obj: func(c *cluster) { worker(c).SecurityContext.RunAsUser = new(int64) }},
		{check: "non-root", obj: func(c *cluster) { c.sts["redis"].Spec.Template.Spec.SecurityContext.RunAsNonRoot = nil }},
		{check: "non-root", obj: func(c *cluster) { gateway(c).SecurityContext.AllowPrivilegeEscalation = nil }},
		{check: "cluster secret", obj: func(c *cluster) { gateway(c).VolumeMounts = nil }},
		{check: "wiring", obj: func(c *cluster) { setArg(worker(c), "advertise", "0.0.0.0:7946") }},
		{check: "wiring", obj: func(c *cluster) { setArg(placement(c), "advertise", "$(POD_IP):7947") }},
		{check: "flags as in compose", obj: func(c *cluster) { setArg(worker(c), "capacity", "100") }},
		{check: "flags as in compose", obj: func(c *cluster) {
			gateway(c).LivenessProbe.Exec.Command = append(gateway(c).LivenessProbe.Exec.Command, "--timeout=5s")
		}},
	}
	for i, tc := range cases {
		doc := string(out)
		if tc.yaml != nil {
			doc = tc.yaml(doc)
		}
		c, err := decode([]byte(doc))
		if tc.check == "decode" {
			if err == nil {
				t.Errorf("case %d: broken YAML decoded without error", i)
			} else {
				t.Logf("case %d: decode: %v", i, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		tc.obj(c)
		var fn func(*cluster) error
		for _, ch := range checks {
			if ch.name == tc.check {
				fn = ch.fn
			}
		}
		if tc.check == "flags as in compose" {
			fn = func(c *cluster) error { return checkComposeFlags(c, compose) }
		}
		if fn == nil {
			t.Fatalf("case %d: no check %q", i, tc.check)
		}
		if err := fn(c); err == nil {
			t.Errorf("case %d: %s passed a broken manifest", i, tc.check)
		} else {
			t.Logf("case %d: %s: %v", i, tc.check, err)
		}
	}
}
