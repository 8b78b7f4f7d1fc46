package process

import (
	"time"

	"golang.org/x/sys/unix"
)

// monitor polls the sandbox's processes: their summed resident memory is both the
// memory limit (enforced by a kill) and Max Memory Used. Polling /proc is used
// instead of RLIMIT_AS, which counts reserved address space: Go, node and the JVM
// reserve far more than they touch, so an address-space cap breaks them long
// before their memory use reaches MemoryMB.
func (s *Sandbox) monitor() {
	defer s.wg.Done()
	t := time.NewTimer(pollBusy)
	defer t.Stop()
	lastScan := time.Time{}
	for {
		select {
		case <-s.closedCh:
			return
		case <-t.C:
		}
		// A scan of /proc finds new and escaped processes; between scans
		// the known members' memory is read directly, a few reads instead
		// of a stat of every process on the host. A process forked since
		// the last scan is measured from the next one (rescanEvery) on;
		// RLIMIT_NPROC bounds how many there can be meanwhile.
		full := time.Since(lastScan) >= rescanEvery
		if full {
			lastScan = time.Now()
		}
		s.sample(full)
		if s.fastPoll.Load() && !s.hasExited() {
			t.Reset(pollBusy)
		} else {
			t.Reset(pollIdle)
		}
	}
}

// sample measures the sandbox's memory: with full, from a fresh /proc scan (which
// also refreshes the member list); otherwise from the last scan's members only,
// which costs a read per process instead of a scan of every process on the host.
func (s *Sandbox) sample(full bool) {
	s.mu.Lock()
	procs := s.members
	s.mu.Unlock()
	known := len(procs) > 0
	if !full {
		full = !known
	}
	if full {
		// The shared scan may predate a sandbox that knows no process
		// yet: that one scans afresh.
		procs = s.scan(!known)
	}
	// One process: its RSS, cheap to read. Several: their PSS, which does not count
	// the pages a fork shares with its parent twice.
	var sum uint64
	for _, p := range procs {
		if len(procs) == 1 {
			sum += rssBytes(p.pid)
		} else {
			sum += pssBytes(p.pid)
		}
	}
	limit := uint64(s.cfg.MemoryMB) << 20
	s.mu.Lock()
	if full {
		s.members = procs
	}
	if sum > s.peak {
		s.peak = sum
	}
	kill := sum > limit && s.oomMB == 0
	if kill {
		s.oomMB = int(sum >> 20)
	}
	s.mu.Unlock()
	if kill {
		s.killAll()
	}
}

// scan lists the sandbox's live (non-zombie) processes. With a sandbox uid that is
// every process of the uid, however it detached itself. Without one it is the
// process group, everything descended from a member, and every process seen in an
// earlier scan (by pid and start time), which keeps a child that called setsid and
// was then orphaned.
func (s *Sandbox) scan(fresh bool) []procInfo {
	if s.uid != nil {
		all := procsOfUID(s.uid.uid, fresh)
		out := all[:0]
		for _, p := range all {
			if p.state != 'Z' && p.state != 'X' {
				out = append(out, p)
			}
		}
		return out
	}
	var all []procInfo
	for _, pid := range listPIDs() {
		if p, ok := readStat(pid); ok && p.state != 'Z' && p.state != 'X' {
			all = append(all, p)
		}
	}
	in := map[int]bool{}
	s.mu.Lock()
	for _, p := range all {
		if p.pgid == s.pid || p.pid == s.pid || s.known[[2]uint64{uint64(p.pid), p.start}] {
			in[p.pid] = true
		}
	}
	for changed := true; changed; {
		changed = false
		for _, p := range all {
			if !in[p.pid] && in[p.ppid] {
				in[p.pid] = true
				changed = true
			}
		}
	}
	var out []procInfo
	for _, p := range all {
		if in[p.pid] {
			out = append(out, p)
			s.known[[2]uint64{uint64(p.pid), p.start}] = true
		}
	}
	s.mu.Unlock()
	return out
}

// signalAll sends sig to the process group and to every other member.
func (s *Sandbox) signalAll(sig unix.Signal) []procInfo {
	procs := s.scan(true)
	group := false
	for _, p := range procs {
		if p.pgid == s.pid {
			group = true
		}
	}
	if group || !s.hasExited() {
		_ = unix.Kill(-s.pid, sig)
	}
	for _, p := range procs {
		_ = unix.Kill(p.pid, sig)
	}
	return procs
}

// killAll SIGKILLs the sandbox's processes until none is left (bounded), so that
// a process forking as fast as it can is also caught.
func (s *Sandbox) killAll() {
	if s.pid <= 0 {
		return
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if procs := s.signalAll(unix.SIGKILL); len(procs) == 0 {
			return
		}
		if time.Now().After(deadline) {
			return
		}
		time.Sleep(time.Millisecond)
	}
}
