package idempotency

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Path is a compiled JMESPath expression from the subset this package
// supports, which covers the expressions Powertools' documentation and its
// users put in event_key_jmespath and payload_validation_jmespath:
//
//	field, "quoted field"    an object member (null when absent / not an object)
//	a.b.c                    sub-expressions
//	a[0], a[-1]              array index (negative counts from the end)
//	[a, b.c]                 multi-select list (also after a dot: x.[a, b])
//	{k: a, "k 2": b.c}       multi-select hash (also after a dot)
//	@                        the current node
//	powertools_json(e)       parse the string e as JSON (API Gateway "body")
//	powertools_base64(e)     base64-decode the string e
//	powertools_base64_gzip(e) base64-decode then gunzip the string e
//
// As in JMESPath, selecting through null gives null, and a multi-select on
// null is null. A function given null returns null (the key is then missing);
// given another non-string, or a string it cannot decode, evaluation fails.
// Not supported (compile error): projections ([*], [], .*, [?filter]),
// slices, pipes, literals, comparisons and other functions.
type Path struct {
	src  string
	root pathNode
}

// CompilePath parses expr. The empty expression selects the whole event.
func CompilePath(expr string) (*Path, error) {
	if strings.TrimSpace(expr) == "" {
		return &Path{src: expr, root: currentNode{}}, nil
	}
	p := &pathParser{s: expr}
	n, err := p.expr(0)
	if err == nil {
		p.space()
		if p.i < len(p.s) {
			err = p.errorf("unexpected %q", p.s[p.i:])
		}
	}
	if err != nil {
		return nil, err
	}
	return &Path{src: expr, root: n}, nil
}

// String returns the expression as written.
func (p *Path) String() string { return p.src }

// Search evaluates the path against a value decoded from JSON (objects as
// map[string]any, arrays as []any, numbers as json.Number or float64).
func (p *Path) Search(v any) (any, error) { return p.root.eval(v) }

type pathNode interface {
	eval(v any) (any, error)
}

type currentNode struct{}

func (currentNode) eval(v any) (any, error) { return v, nil }

type fieldNode struct{ name string }

func (n fieldNode) eval(v any) (any, error) {
	m, _ := v.(map[string]any)
	return m[n.name], nil
}

type indexNode struct{ i int }

func (n indexNode) eval(v any) (any, error) {
	a, ok := v.([]any)
	if !ok {
		return nil, nil
	}
	i := n.i
	if i < 0 {
		i += len(a)
	}
	if i < 0 || i >= len(a) {
		return nil, nil
	}
	return a[i], nil
}

type subNode struct{ left, right pathNode }

func (n subNode) eval(v any) (any, error) {
	l, err := n.left.eval(v)
	if err != nil || l == nil {
		return nil, err
	}
	return n.right.eval(l)
}

type listNode struct{ items []pathNode }

func (n listNode) eval(v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	out := make([]any, len(n.items))
	for i, it := range n.items {
		r, err := it.eval(v)
		if err != nil {
			return nil, err
		}
		out[i] = r
	}
	return out, nil
}

type hashNode struct {
	keys  []string
	items []pathNode
}

func (n hashNode) eval(v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	out := make(map[string]any, len(n.items))
	for i, it := range n.items {
		r, err := it.eval(v)
		if err != nil {
			return nil, err
		}
		out[n.keys[i]] = r
	}
	return out, nil
}

type funcNode struct {
	name string
	arg  pathNode
}

var pathFuncs = map[string]bool{
	"powertools_json":        true,
	"powertools_base64":      true,
	"powertools_base64_gzip": true,
}

func (n funcNode) eval(v any) (any, error) {
	a, err := n.arg.eval(v)
	if err != nil || a == nil {
		return nil, err
	}
	s, ok := a.(string)
	if !ok {
		return nil, fmt.Errorf("idempotency: %s() expects a string, got %s", n.name, jsonType(a))
	}
	switch n.name {
	case "powertools_json":
		r, err := decodeJSON([]byte(s))
		if err != nil {
			return nil, fmt.Errorf("idempotency: powertools_json(): %w", err)
		}
		return r, nil
	case "powertools_base64":
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("idempotency: powertools_base64(): %w", err)
		}
		return string(b), nil
	default: // powertools_base64_gzip
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("idempotency: powertools_base64_gzip(): %w", err)
		}
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("idempotency: powertools_base64_gzip(): %w", err)
		}
		// Bounded: an event is at most 6 MB, its inflated key data no
		// more than a few times that.
		out, err := io.ReadAll(io.LimitReader(zr, 64<<20))
		if err != nil {
			return nil, fmt.Errorf("idempotency: powertools_base64_gzip(): %w", err)
		}
		return string(out), nil
	}
}

func jsonType(v any) string {
	switch v.(type) {
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case string:
		return "string"
	case bool:
		return "boolean"
	case nil:
		return "null"
	}
	return "number"
}

// maxPathDepth bounds nesting so a hostile expression cannot exhaust the
// stack of the recursive parser.
const maxPathDepth = 32

type pathParser struct {
	s string
	i int
}

func (p *pathParser) errorf(format string, a ...any) error {
	return fmt.Errorf("idempotency: path %q at offset %d: %s", p.s, p.i, fmt.Sprintf(format, a...))
}

func (p *pathParser) space() {
	for p.i < len(p.s) && strings.IndexByte(" \t\r\n", p.s[p.i]) >= 0 {
		p.i++
	}
}

func (p *pathParser) peek() byte {
	p.space()
	if p.i < len(p.s) {
		return p.s[p.i]
	}
	return 0
}

func (p *pathParser) expr(depth int) (pathNode, error) {
	if depth > maxPathDepth {
		return nil, p.errorf("nested too deeply")
	}
	left, err := p.term(depth)
	if err != nil {
		return nil, err
	}
	for {
		switch p.peek() {
		case '.':
			p.i++
			var right pathNode
			switch p.peek() {
			case '[':
				p.i++
				right, err = p.list(depth)
			case '{':
				p.i++
				right, err = p.hash(depth)
			default:
				right, err = p.identOrCall(depth)
			}
			if err != nil {
				return nil, err
			}
			left = subNode{left, right}
		case '[':
			p.i++
			idx, ok, err := p.index()
			if err != nil {
				return nil, err
			}
			if !ok {
				return nil, p.errorf("only [n] may follow an expression (projections are not supported)")
			}
			left = subNode{left, idx}
		default:
			return left, nil
		}
	}
}

func (p *pathParser) term(depth int) (pathNode, error) {
	switch p.peek() {
	case '@':
		p.i++
		return currentNode{}, nil
	case '[':
		p.i++
		idx, ok, err := p.index()
		if err != nil || ok {
			return idx, err
		}
		return p.list(depth)
	case '{':
		p.i++
		return p.hash(depth)
	case 0:
		return nil, p.errorf("expression expected")
	}
	return p.identOrCall(depth)
}

// index parses "n]" after '['; ok is false (nothing consumed) when the
// bracket does not hold an integer.
func (p *pathParser) index() (pathNode, bool, error) {
	c := p.peek()
	switch {
	case c == '*' || c == ']' || c == '?' || c == ':':
		return nil, false, p.errorf("projections, flatten, filters and slices are not supported")
	case c != '-' && (c < '0' || c > '9'):
		return nil, false, nil
	}
	start := p.i
	p.i++
	for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
		p.i++
	}
	n, err := strconv.Atoi(p.s[start:p.i])
	if err != nil {
		return nil, false, p.errorf("bad index %q", p.s[start:p.i])
	}
	if p.peek() != ']' {
		return nil, false, p.errorf("']' expected (slices are not supported)")
	}
	p.i++
	return indexNode{n}, true, nil
}

// list parses "e, e, ...]" after '['.
func (p *pathParser) list(depth int) (pathNode, error) {
	var items []pathNode
	for {
		n, err := p.expr(depth + 1)
		if err != nil {
			return nil, err
		}
		items = append(items, n)
		switch p.peek() {
		case ',':
			p.i++
		case ']':
			p.i++
			return listNode{items}, nil
		default:
			return nil, p.errorf("',' or ']' expected")
		}
	}
}

// hash parses "k: e, ...}" after '{'.
func (p *pathParser) hash(depth int) (pathNode, error) {
	var h hashNode
	for {
		k, err := p.name()
		if err != nil {
			return nil, err
		}
		if p.peek() != ':' {
			return nil, p.errorf("':' expected")
		}
		p.i++
		n, err := p.expr(depth + 1)
		if err != nil {
			return nil, err
		}
		h.keys, h.items = append(h.keys, k), append(h.items, n)
		switch p.peek() {
		case ',':
			p.i++
		case '}':
			p.i++
			return h, nil
		default:
			return nil, p.errorf("',' or '}' expected")
		}
	}
}

func (p *pathParser) identOrCall(depth int) (pathNode, error) {
	quoted := p.peek() == '"'
	name, err := p.name()
	if err != nil {
		return nil, err
	}
	if quoted || p.peek() != '(' {
		return fieldNode{name}, nil
	}
	if !pathFuncs[name] {
		return nil, p.errorf("function %s() is not supported", name)
	}
	p.i++
	arg, err := p.expr(depth + 1)
	if err != nil {
		return nil, err
	}
	if p.peek() != ')' {
		return nil, p.errorf("')' expected")
	}
	p.i++
	return funcNode{name, arg}, nil
}

// name parses an unquoted identifier ([A-Za-z_][A-Za-z0-9_]*) or a quoted
// one (a JSON string).
func (p *pathParser) name() (string, error) {
	c := p.peek()
	if c == '"' {
		start := p.i
		p.i++
		for p.i < len(p.s) && p.s[p.i] != '"' {
			if p.s[p.i] == '\\' {
				p.i++
			}
			p.i++
		}
		if p.i >= len(p.s) {
			return "", p.errorf("unterminated quoted identifier")
		}
		p.i++
		var s string
		if err := json.Unmarshal([]byte(p.s[start:p.i]), &s); err != nil {
			return "", p.errorf("bad quoted identifier: %v", err)
		}
		return s, nil
	}
	start := p.i
	for p.i < len(p.s) {
		c := p.s[p.i]
		if c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || p.i > start && c >= '0' && c <= '9' {
			p.i++
			continue
		}
		break
	}
	if p.i == start {
		if p.i < len(p.s) {
			return "", p.errorf("identifier expected, found %q", p.s[p.i])
		}
		return "", p.errorf("identifier expected")
	}
	return p.s[start:p.i], nil
}

// missingKey is Powertools' is_missing_idempotency_key: null, "", an empty
// object or an array whose elements are all null select nothing. Numbers
// and booleans (even 0 and false) are keys. A non-empty object is a key even
// when all its values are null, because Python's check iterates the
// object's keys, which are never None.
func missingKey(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case string:
		return x == ""
	case []any:
		for _, e := range x {
			if e != nil {
				return false
			}
		}
		return true
	case map[string]any:
		return len(x) == 0
	}
	return false
}
