package process

import (
	"bytes"
	"time"

	"golang.org/x/sys/unix"
)

var timeNow = time.Now

// readLogs reads the process's stdout+stderr pipe. Reading and dispatching happen
// under logMu in one step (through the raw fd), so drainLogs, which reads what is
// still in the pipe under the same lock, can attribute every line written before a
// response to that invocation: none is ever in flight between the two.
func (s *Sandbox) readLogs() {
	defer s.wg.Done()
	rc, err := s.logR.SyscallConn()
	if err != nil {
		return
	}
	buf := make([]byte, 64<<10)
	for {
		eof := false
		err := rc.Read(func(fd uintptr) bool {
			s.logMu.Lock()
			defer s.logMu.Unlock()
			for {
				n, err := unix.Read(int(fd), buf)
				switch {
				case err == unix.EINTR:
					continue
				case err == unix.EAGAIN:
					return false
				case err != nil || n == 0:
					eof = true
					s.flushPartialLocked()
					return true
				}
				s.consumeLocked(buf[:n])
				return true
			}
		})
		if err != nil || eof {
			return
		}
	}
}

// drainLogs takes in whatever the process has written and the reader has not.
func (s *Sandbox) drainLogs() {
	if s.logR == nil {
		return
	}
	rc, err := s.logR.SyscallConn()
	if err != nil {
		return
	}
	buf := make([]byte, 64<<10)
	s.logMu.Lock()
	defer s.logMu.Unlock()
	_ = rc.Control(func(fd uintptr) {
		for i := 0; i < 64; i++ { // bounded: a process writing nonstop cannot hold us here
			n, err := unix.Read(int(fd), buf)
			if err == unix.EINTR {
				continue
			}
			if err != nil || n == 0 {
				return
			}
			s.consumeLocked(buf[:n])
		}
	})
}

func (s *Sandbox) consumeLocked(b []byte) {
	s.partial = append(s.partial, b...)
	p := s.partial
	for {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			if len(p) >= maxLineBytes {
				s.emitLocked(p[:maxLineBytes])
				p = p[maxLineBytes:]
				continue
			}
			break
		}
		if i > maxLineBytes {
			s.emitLocked(p[:maxLineBytes])
			p = p[maxLineBytes:]
			continue
		}
		s.emitLocked(p[:i])
		p = p[i+1:]
	}
	s.partial = append(s.partial[:0], p...)
}

func (s *Sandbox) flushPartialLocked() {
	if len(s.partial) > 0 {
		s.emitLocked(s.partial)
		s.partial = s.partial[:0]
	}
}

func (s *Sandbox) emitLocked(line []byte) {
	if s.sink != nil {
		s.sink.add(line)
	}
	if s.cfg.Log != nil {
		s.cfg.Log(append([]byte(nil), line...))
	}
}
