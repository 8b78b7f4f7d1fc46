// Command payments charges an order: its side effect is a ledger in Redis,
// so a platform that runs it twice for one order charges twice. The same
// binary runs naive or wrapped in idempotency.WrapBytes (PAYMENTS_MODE);
// run with -check it reads the ledger and names the orders charged more
// than once.
//
// Event: {"order_id":"o-1","account":"acme","amount":10}. Answer:
// {"order_id":"o-1","charged":10,"balance":120,"request_id":"..."}.
//
// Ledger (LEDGER, default the function's name, prefixes every key):
//
//	{ledger}:balance:{account}   INCRBY amount
//	{ledger}:charges             RPUSH order_id (one entry per charge)
//	{ledger}:runs:{order_id}     RPUSH request_id (who charged it)
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/redis/go-redis/v9"

	"github.com/coldstart-dev/coldstart/idempotency"
)

type order struct {
	OrderID string `json:"order_id"`
	Account string `json:"account"`
	Amount  int64  `json:"amount"`
}

type receipt struct {
	OrderID   string `json:"order_id"`
	Charged   int64  `json:"charged"`
	Balance   int64  `json:"balance"`
	RequestID string `json:"request_id"`
}

// ledger is the Redis side of a charge.
type ledger struct {
	rdb    *redis.Client
	prefix string
}

func newLedger(addr, prefix string) *ledger {
	return &ledger{rdb: redis.NewClient(&redis.Options{Addr: addr}), prefix: prefix}
}

func (l *ledger) key(parts ...string) string {
	k := l.prefix
	for _, p := range parts {
		k += ":" + p
	}
	return k
}

// charge books one charge. The three writes go in one MULTI so the ledger
// never shows a balance change without its entry: what a retry repeats is
// the whole charge, which is the double charge the example is about.
func (l *ledger) charge(ctx context.Context, o order, requestID string) (int64, error) {
	var bal *redis.IntCmd
	_, err := l.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		bal = p.IncrBy(ctx, l.key("balance", o.Account), o.Amount)
		p.RPush(ctx, l.key("charges"), o.OrderID)
		p.RPush(ctx, l.key("runs", o.OrderID), requestID)
		return nil
	})
	if err != nil {
		return 0, err
	}
	return bal.Val(), nil
}

// handler is the raw-bytes charge: WrapBytes keys on the event as
// received, the same key Powertools computes for it.
func (l *ledger) handler(ctx context.Context, payload []byte) ([]byte, error) {
	var o order
	if err := json.Unmarshal(payload, &o); err != nil {
		return nil, fmt.Errorf("bad order: %w", err)
	}
	if o.OrderID == "" || o.Amount <= 0 {
		return nil, errors.New("an order needs order_id and a positive amount")
	}
	if o.Account == "" {
		o.Account = "default"
	}
	lc, _ := lambdacontext.FromContext(ctx)
	var reqID string
	if lc != nil {
		reqID = lc.AwsRequestID
	}
	bal, err := l.charge(ctx, o, reqID)
	if err != nil {
		return nil, err
	}
	return json.Marshal(receipt{OrderID: o.OrderID, Charged: o.Amount, Balance: bal, RequestID: reqID})
}

// Check is what the ledger says: how often each order was charged.
type Check struct {
	Charges int            `json:"charges"`
	Orders  int            `json:"orders"`
	Twice   map[string]int `json:"charged_more_than_once"` // order id -> charges
	// Runs are the request ids that charged each order of Twice (one id
	// when the platform retried one event).
	Runs map[string][]string `json:"runs,omitempty"`
}

// check reads the charges of the orders whose id starts with prefix.
func (l *ledger) check(ctx context.Context, prefix string) (*Check, error) {
	ids, err := l.rdb.LRange(ctx, l.key("charges"), 0, -1).Result()
	if err != nil {
		return nil, err
	}
	n := map[string]int{}
	charges := 0
	for _, id := range ids {
		if strings.HasPrefix(id, prefix) {
			n[id]++
			charges++
		}
	}
	c := &Check{Charges: charges, Orders: len(n), Twice: map[string]int{}, Runs: map[string][]string{}}
	for id, k := range n {
		if k > 1 {
			c.Twice[id] = k
			runs, err := l.rdb.LRange(ctx, l.key("runs", id), 0, -1).Result()
			if err != nil {
				return nil, err
			}
			slices.Sort(runs)
			c.Runs[id] = slices.Compact(runs)
		}
	}
	return c, nil
}

func printCheck(w io.Writer, ledgerName string, c *Check) {
	fmt.Fprintf(w, "%s: %d charges for %d orders\n", ledgerName, c.Charges, c.Orders)
	ids := make([]string, 0, len(c.Twice))
	for id := range c.Twice {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		fmt.Fprintf(w, "  %s charged %d times (request %s)\n", id, c.Twice[id], strings.Join(c.Runs[id], ", "))
	}
	if len(ids) == 0 {
		fmt.Fprintln(w, "  every order charged once")
	}
}

func main() {
	checkLedger := flag.String("check", "", "read the ledger LEDGER (a function's name) and name the orders charged more than once, instead of serving invocations")
	orders := flag.String("orders", "", "with -check: only the orders whose id starts with this")
	asJSON := flag.Bool("json", false, "with -check: print JSON")
	flag.Parse()
	addr := os.Getenv("REDIS_ADDR")
	if addr == "" {
		addr = "127.0.0.1:6379"
	}
	if *checkLedger != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := newLedger(addr, *checkLedger).check(ctx, *orders)
		if err != nil {
			fmt.Fprintln(os.Stderr, "payments -check:", err)
			os.Exit(1)
		}
		if *asJSON {
			b, _ := json.MarshalIndent(c, "", "  ")
			fmt.Println(string(b))
		} else {
			printCheck(os.Stdout, *checkLedger, c)
		}
		return
	}
	prefix := os.Getenv("LEDGER")
	if prefix == "" {
		prefix = os.Getenv("AWS_LAMBDA_FUNCTION_NAME")
	}
	l := newLedger(addr, prefix)
	switch mode := os.Getenv("PAYMENTS_MODE"); mode {
	case "", "naive":
		lambda.Start(idempotency.BytesHandler(l.handler))
	case "wrapped":
		// Keyed by order_id alone: a retry of an order is the same charge
		// whatever request id the platform gives it. The amount is
		// validated, so reusing an order id for another amount is refused
		// rather than answered with the first receipt.
		store := idempotency.NewRedisStore(l.rdb)
		lambda.Start(idempotency.WrapBytes(l.handler, store, idempotency.Config{
			EventKeyPath:          "order_id",
			PayloadValidationPath: "amount",
			RaiseOnNoKey:          true,
			ExpiresAfter:          time.Hour,
		}))
	default:
		fmt.Fprintf(os.Stderr, "payments: PAYMENTS_MODE %q: want naive or wrapped\n", mode)
		os.Exit(2)
	}
}
