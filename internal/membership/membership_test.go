package membership

import (
	"bytes"
	"testing"
	"time"
)

type joins chan string

func (j joins) MemberJoin(m Member) { j <- m.ID }
func (j joins) MemberLeave(Member)  {}

func join(t *testing.T, id string, key []byte, obs Observer) *List {
	t.Helper()
	l, err := Join(Config{Meta: Meta{ID: id, Role: RoleWorker}, BindAddr: "127.0.0.1:0", Timing: Fast, SecretKey: key, Observer: obs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Kill() })
	return l
}

func has(l *List, id string) bool {
	for _, m := range l.Members() {
		if m.ID == id {
			return true
		}
	}
	return false
}

// TestWrongKeyIsNotAdmitted: with gossip encryption, a member with another
// key (or none) cannot join; one with the key can.
func TestWrongKeyIsNotAdmitted(t *testing.T) {
	key := bytes.Repeat([]byte{1}, 32)
	seen := make(joins, 16)
	a := join(t, "a", key, seen)
	for _, tc := range []struct {
		name string
		key  []byte
	}{
		{"another key", bytes.Repeat([]byte{2}, 32)},
		{"no key", nil},
	} {
		b := join(t, "b-"+tc.name, tc.key, nil)
		if n, err := b.ml.Join([]string{a.Addr()}); err == nil || n != 0 {
			t.Errorf("%s: joined %d members (err %v)", tc.name, n, err)
		}
		if has(a, b.ml.LocalNode().Name) || has(b, "a") {
			t.Errorf("%s: admitted", tc.name)
		}
	}
	c := join(t, "c", key, nil)
	if _, err := c.ml.Join([]string{a.Addr()}); err != nil {
		t.Fatalf("same key: %v", err)
	}
	deadline := time.After(5 * time.Second)
	for id := ""; id != "c"; {
		select {
		case id = <-seen:
			if id != "a" && id != "c" {
				t.Errorf("a admitted %s", id)
			}
		case <-deadline:
			t.Fatal("a member with the key was not admitted")
		}
	}
	for _, m := range a.Members() {
		if m.ID != "a" && m.ID != "c" {
			t.Errorf("a sees %s", m.ID)
		}
	}
}
