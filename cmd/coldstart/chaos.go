package main

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// serveAdmin starts the loopback admin endpoint of `coldstart up`: list,
// kill and restart nodes. Every request needs the token, which is written to
// DATA/admin-token (mode 0600) so the CLI on the same machine can read it.
func (c *embedded) serveAdmin(addr, dataDir string) (string, error) {
	token := os.Getenv("COLDSTART_ADMIN_TOKEN")
	if token == "" {
		var b [16]byte
		rand.Read(b[:])
		token = hex.EncodeToString(b[:])
	}
	if err := os.WriteFile(filepath.Join(dataDir, "admin-token"), []byte(token+"\n"), 0o600); err != nil {
		return "", err
	}
	mux := http.NewServeMux()
	auth := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			got := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
			if subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
				http.Error(w, "admin token required (Authorization: Bearer TOKEN)", http.StatusForbidden)
				return
			}
			h(w, r)
		}
	}
	mux.HandleFunc("GET /coldstart/v1/nodes", auth(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		out := map[string]string{}
		for _, id := range c.order {
			out[id] = "stopped"
			if c.nodes[id] != nil {
				out[id] = "running"
			}
		}
		c.mu.Unlock()
		json.NewEncoder(w).Encode(out)
	}))
	for _, verb := range []string{"kill", "restart"} {
		verb := verb
		mux.HandleFunc("POST /coldstart/v1/chaos/"+verb+"/{node}", auth(func(w http.ResponseWriter, r *http.Request) {
			id := r.PathValue("node")
			var err error
			if verb == "kill" {
				err = c.kill(id)
			} else {
				err = c.start(id)
			}
			if err != nil {
				http.Error(w, err.Error(), http.StatusConflict)
				return
			}
			c.log.Warn("chaos: "+verb, "node", id)
			fmt.Fprintf(w, "%s %s\n", verb, id)
		}))
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	c.stopAdmin = func() { srv.Close() }
	return token, nil
}

func runChaos(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	admin := fs.String("admin", envOr("COLDSTART_ADMIN", "127.0.0.1:9100"), "admin address of `coldstart up`")
	data := fs.String("data", envOr("COLDSTART_DATA", "./.coldstart"), "data directory of `coldstart up` (holds admin-token)")
	pos, code := parseCmd(fs, args, stdout, stderr, "coldstart chaos <list|kill NODE|restart NODE>",
		"Kill and restart nodes of a running `coldstart up` (a kill is a crash: no goodbye to the cluster).\nThe token is read from $COLDSTART_ADMIN_TOKEN or DATA/admin-token.",
		"coldstart chaos kill placement-1 && coldstart status && coldstart chaos restart placement-1")
	if code >= 0 {
		return code
	}
	if len(pos) == 0 || (pos[0] != "list" && len(pos) != 2) {
		fmt.Fprintln(stderr, "coldstart chaos: want list, kill NODE or restart NODE (see --help)")
		return 2
	}
	token := os.Getenv("COLDSTART_ADMIN_TOKEN")
	if token == "" {
		b, err := os.ReadFile(filepath.Join(*data, "admin-token"))
		if err != nil {
			fmt.Fprintf(stderr, "coldstart chaos: no token: %v (set --data or $COLDSTART_ADMIN_TOKEN)\n", err)
			return 2
		}
		token = strings.TrimSpace(string(b))
	}
	method, path := http.MethodGet, "/coldstart/v1/nodes"
	if pos[0] != "list" {
		method, path = http.MethodPost, "/coldstart/v1/chaos/"+pos[0]+"/"+pos[1]
	}
	req, _ := http.NewRequestWithContext(ctx, method, "http://"+*admin+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintln(stderr, "coldstart chaos:", err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		fmt.Fprintf(stderr, "coldstart chaos: %s: %s", resp.Status, body)
		return 1
	}
	if pos[0] == "list" {
		var nodes map[string]string
		json.Unmarshal(body, &nodes)
		ids := make([]string, 0, len(nodes))
		for id := range nodes {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			fmt.Fprintf(stdout, "%-13s %s\n", id, nodes[id])
		}
		return 0
	}
	stdout.Write(body)
	return 0
}
