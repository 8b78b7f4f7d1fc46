// Package ports picks free loopback ports outside the kernel's ephemeral
// range. Raft peers and memberlist members are addressed by host:port, so a
// restarted node must bind the same port again; a port from the ephemeral
// range may by then be the local end of some outgoing connection.
package ports

import (
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
)

// The range sits below Linux's default ephemeral range (32768-60999).
const lo, hi = 20000, 32000

var (
	mu    sync.Mutex
	given = map[int]bool{} // never hand out the same port twice in a process
)

// Free returns n distinct ports on host that are free for TCP and UDP now
// (memberlist uses both on one port).
func Free(host string, n int) ([]int, error) {
	mu.Lock()
	defer mu.Unlock()
	var out []int
	for tries := 0; len(out) < n; tries++ {
		if tries > 5000 {
			return nil, fmt.Errorf("no free port in %d-%d on %s", lo, hi, host)
		}
		p := lo + rand.IntN(hi-lo)
		if given[p] || !free(host, p) {
			continue
		}
		given[p] = true
		out = append(out, p)
	}
	return out, nil
}

func free(host string, p int) bool {
	addr := net.JoinHostPort(host, strconv.Itoa(p))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	defer l.Close()
	u, err := net.ListenPacket("udp", addr)
	if err != nil {
		return false
	}
	u.Close()
	return true
}
