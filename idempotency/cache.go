package idempotency

import (
	"container/list"
	"sync"
	"time"
)

// lruCache is Powertools' local cache: COMPLETED records only (an INPROGRESS
// record can change in another execution environment at any moment, so a
// cached one would be stale), least recently used evicted first, expired
// entries dropped when read.
type lruCache struct {
	mu    sync.Mutex
	max   int
	ll    *list.List // front = most recently used; values are Record
	items map[string]*list.Element
}

func newLRUCache(max int) *lruCache {
	return &lruCache{max: max, ll: list.New(), items: make(map[string]*list.Element)}
}

func (c *lruCache) get(key string, now time.Time) (Record, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.items[key]
	if !ok {
		return Record{}, false
	}
	r := e.Value.(Record)
	if r.StatusAt(now) != StatusCompleted {
		c.ll.Remove(e)
		delete(c.items, key)
		return Record{}, false
	}
	c.ll.MoveToFront(e)
	return r, true
}

func (c *lruCache) put(r Record) {
	if r.Status != StatusCompleted {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[r.Key]; ok {
		e.Value = r
		c.ll.MoveToFront(e)
		return
	}
	c.items[r.Key] = c.ll.PushFront(r)
	for c.ll.Len() > c.max {
		old := c.ll.Back()
		c.ll.Remove(old)
		delete(c.items, old.Value.(Record).Key)
	}
}

func (c *lruCache) remove(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[key]; ok {
		c.ll.Remove(e)
		delete(c.items, key)
	}
}
