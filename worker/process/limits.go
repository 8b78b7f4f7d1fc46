package process

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// uidBase is the first uid handed to sandboxes when the host runs as root. The range
// is far above normal login and system uids so a sandbox never shares a uid (and so
// an RLIMIT_NPROC budget or file ownership) with anything else on the machine.
const (
	uidBase  = 200000
	uidCount = 60000
)

// LimitsMode reports which isolation is in force for sandboxes started by this
// process: "rlimit+uid" when running as root (per-sandbox uid, RLIMIT_NPROC and
// RLIMIT_NOFILE, memory by RSS polling), "rlimit" otherwise (same rlimits, shared uid).
// cgroup v2 is not used: see DESIGN.md.
func LimitsMode() string {
	if os.Geteuid() == 0 {
		return "rlimit+uid"
	}
	return "rlimit"
}

// uidLease is one allocated sandbox uid. The lock file is held with flock for the
// lease's lifetime so that two host processes on one machine (several worker nodes
// in one container) never hand out the same uid; the kernel drops the lock if the
// host dies, which frees the uid without any cleanup protocol.
type uidLease struct {
	uid  int
	lock *os.File
}

var (
	uidMu   sync.Mutex
	uidNext = 0
	uidHeld = map[int]bool{}
)

func uidLockDir() string { return filepath.Join(os.TempDir(), "coldstart-sandbox-uids") }

func allocUID() (*uidLease, error) {
	dir := uidLockDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("uid lock dir: %w", err)
	}
	uidMu.Lock()
	defer uidMu.Unlock()
	for i := 0; i < uidCount; i++ {
		uid := uidBase + (uidNext+i)%uidCount
		if uidHeld[uid] {
			continue
		}
		f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(uid)), os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			return nil, fmt.Errorf("uid lock: %w", err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			continue
		}
		// A uid whose previous owner died may still have processes (or unreaped
		// zombies, which count against RLIMIT_NPROC): kill them and take another uid
		// if anything remains, so a new sandbox starts with its full process budget.
		if procs := procsOfUID(uid, true); len(procs) > 0 {
			for _, p := range procs {
				_ = unix.Kill(p.pid, unix.SIGKILL)
			}
			f.Close()
			continue
		}
		uidHeld[uid] = true
		uidNext = (uidNext + i + 1) % uidCount
		return &uidLease{uid: uid, lock: f}, nil
	}
	return nil, errors.New("no free sandbox uid")
}

func (l *uidLease) release() {
	if l == nil {
		return
	}
	uidMu.Lock()
	delete(uidHeld, l.uid)
	uidMu.Unlock()
	l.lock.Close()
}

// procInfo is what a /proc scan needs about one process.
type procInfo struct {
	pid, ppid, pgid int
	state           byte
	start           uint64 // start time in clock ticks: with pid, identifies the process across pid reuse
}

func readStat(pid int) (procInfo, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procInfo{}, false
	}
	return parseStat(pid, b)
}

// parseStat reads /proc/<pid>/stat. The command name (field 2) may contain spaces
// and parentheses, so fields are counted from the last ')'.
func parseStat(pid int, b []byte) (procInfo, bool) {
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return procInfo{}, false
	}
	f := strings.Fields(s[i+2:])
	// f[0]=state(3) f[1]=ppid(4) f[2]=pgrp(5) ... f[19]=starttime(22)
	if len(f) < 20 || len(f[0]) == 0 {
		return procInfo{}, false
	}
	ppid, _ := strconv.Atoi(f[1])
	pgid, _ := strconv.Atoi(f[2])
	start, _ := strconv.ParseUint(f[19], 10, 64)
	return procInfo{pid: pid, ppid: ppid, pgid: pgid, state: f[0][0], start: start}, true
}

func listPIDs() []int {
	d, err := os.Open("/proc")
	if err != nil {
		return nil
	}
	defer d.Close()
	names, _ := d.Readdirnames(-1)
	pids := make([]int, 0, len(names))
	for _, n := range names {
		if n[0] < '0' || n[0] > '9' {
			continue
		}
		if pid, err := strconv.Atoi(n); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// procsOfUID lists every process whose /proc entry belongs to uid (the effective
// uid), including zombies.
func procsOfUID(uid int, fresh bool) []procInfo {
	idx := &uidIndex
	idx.mu.Lock()
	defer idx.mu.Unlock()
	if fresh || idx.byUID == nil || time.Since(idx.at) > uidIndexFresh {
		// A fresh scan (kills, uid allocation) reads each process's state
		// to leave zombies out; a monitor's only needs the pids, whose
		// memory it reads next (a zombie's is zero).
		idx.byUID = scanSandboxUIDs(fresh)
		idx.at = time.Now()
		hostScans.Add(1)
	}
	return append([]procInfo(nil), idx.byUID[uid]...)
}

// uidIndex is one /proc scan shared by every sandbox of this process: each
// sandbox's monitor polling /proc on its own made the scans (a stat of
// every process on the host) grow with the number of sandboxes times the
// number of processes, most of a busy worker's CPU. Monitors accept a scan
// up to uidIndexFresh old (so a host scan happens at most 20 times a second, whatever the number of sandboxes); a kill always scans afresh, so that a process
// forked just before it is never missed.
var uidIndex struct {
	mu    sync.Mutex
	at    time.Time
	byUID map[int][]procInfo
}

const uidIndexFresh = 50 * time.Millisecond

// hostScans counts scans of /proc (a test bounds their rate).
var hostScans atomic.Int64

// scanSandboxUIDs lists the processes of every sandbox uid, by uid; with
// state, each with its /proc stat (state, parent, group), else the pid only.
func scanSandboxUIDs(state bool) map[int][]procInfo {
	out := map[int][]procInfo{}
	var st unix.Stat_t
	for _, pid := range listPIDs() {
		if unix.Stat("/proc/"+strconv.Itoa(pid), &st) != nil || int(st.Uid) < uidBase || int(st.Uid) >= uidBase+uidCount {
			continue
		}
		if !state {
			out[int(st.Uid)] = append(out[int(st.Uid)], procInfo{pid: pid})
		} else if p, ok := readStat(pid); ok {
			out[int(st.Uid)] = append(out[int(st.Uid)], p)
		}
	}
	return out
}

var pageSize = uint64(os.Getpagesize())

// rssBytes is the resident set of one process (all its threads share it).
func rssBytes(pid int) uint64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.ParseUint(f[1], 10, 64)
	return n * pageSize
}

// pssBytes is a process's proportional set size: pages shared with other
// processes (a forked child and its parent) are divided among them, so a sum over
// the sandbox counts each page once, as a memory cgroup would.
func pssBytes(pid int) uint64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/smaps_rollup")
	if err != nil {
		return rssBytes(pid)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Pss:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, _ := strconv.ParseUint(f[0], 10, 64)
				return n << 10
			}
		}
	}
	return rssBytes(pid)
}

// applyRlimits sets the sandbox's limits on a process that is stopped at its first
// instruction after exec (see startStopped), so nothing it runs can fork first.
func applyRlimits(pid, maxProcs int) error {
	lim := []struct {
		res int
		v   uint64
	}{
		{unix.RLIMIT_NPROC, uint64(maxProcs)},
		{unix.RLIMIT_NOFILE, 1024},
		{unix.RLIMIT_CORE, 0},
	}
	for _, l := range lim {
		r := unix.Rlimit{Cur: l.v, Max: l.v}
		if err := unix.Prlimit(pid, l.res, &r, nil); err != nil {
			return fmt.Errorf("prlimit %d: %w", l.res, err)
		}
	}
	return nil
}

// startStopped starts cmd traced, so the kernel stops the child right after its
// execve, applies the rlimits to it and lets it go. ptrace requests must come from
// the thread that forked the child, hence the locked OS thread.
//
// prlimit(2) on another user's process needs CAP_SYS_RESOURCE, which a container's
// root often lacks; it is also allowed when the caller's real uid and gid equal the
// target's. So, when the child runs under a sandbox uid, this thread alone (raw
// setresuid/setresgid act on one thread; Go's wrappers would change all) takes that
// uid and gid as its real ids, keeping effective and saved root, and restores them
// before the thread is released.
func startStopped(start func() error, pid func() int, maxProcs, uid int) error {
	runtime.LockOSThread()
	if err := start(); err != nil {
		runtime.UnlockOSThread()
		return err
	}
	p := pid()
	var ws syscall.WaitStatus
	for {
		_, err := syscall.Wait4(p, &ws, syscall.WALL, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			runtime.UnlockOSThread()
			return fmt.Errorf("wait for exec stop: %w", err)
		}
		break
	}
	if !ws.Stopped() {
		runtime.UnlockOSThread()
		return fmt.Errorf("child did not stop at exec: %v", ws)
	}
	var lerr error
	restored := true
	if uid >= 0 {
		lerr = setThreadIDs(uid, 0)
		if lerr == nil {
			lerr = applyRlimits(p, maxProcs)
		}
		if err := setThreadIDs(0, 0); err != nil {
			restored = false
		}
	} else {
		lerr = applyRlimits(p, maxProcs)
	}
	derr := syscall.PtraceDetach(p)
	if restored {
		runtime.UnlockOSThread()
	}
	// else: the goroutine ends with the thread locked, so the runtime discards the
	// thread instead of reusing it with the wrong credentials.
	if derr != nil {
		_ = unix.Kill(p, unix.SIGKILL)
		return fmt.Errorf("ptrace detach: %w", derr)
	}
	if lerr != nil {
		_ = unix.Kill(p, unix.SIGKILL)
		return lerr
	}
	return nil
}

// setThreadIDs sets the calling thread's real uid and gid, effective and saved
// staying root (0).
func setThreadIDs(realID, root int) error {
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(realID), uintptr(root), uintptr(root)); e != 0 {
		return fmt.Errorf("setresgid: %w", e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(realID), uintptr(root), uintptr(root)); e != 0 {
		return fmt.Errorf("setresuid: %w", e)
	}
	return nil
}
