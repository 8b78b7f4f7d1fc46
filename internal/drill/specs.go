package drill

// Specs are the drills, in the order `coldstart drill list` shows them.
var Specs = []Spec{
	{
		Name: "quorum-loss", Title: "cold starts fail, warm invocations do not",
		Choices: []string{"placement-leader", "nats-down", "placement-quorum", "account-limit", "worker-crash"},
		Right:   "placement-quorum", Anchor: "placement-quorum-loss", Duration: "~8s",
		Signal: "warm invocations kept succeeding while every cold start failed fast with ServiceException (500, never 429): " +
			"existing sandboxes need no placement, new ones need a Raft commit, and with 1 of 3 placement nodes there is no leader to commit it",
	},
	{
		Name: "leader-loss", Title: "a short blip in cold starts",
		Choices: []string{"placement-quorum", "placement-leader", "worker-crash", "deploy", "nats-down"},
		Right:   "placement-leader", Anchor: "placement-leader-loss", Duration: "~5s",
		Signal: "coldstart status names a different placement leader and one placement node is gone, and cold starts succeed again " +
			"by themselves: 2 of 3 nodes still form a quorum, so the blip lasts one election",
	},
	{
		Name: "worker-crash", Title: "some requests failed, then traffic moved",
		Choices: []string{"worker-zombie", "worker-crash", "placement-leader", "handler-bug", "deploy"},
		Right:   "worker-crash", Anchor: "worker-crash", Duration: "~6s",
		Signal: "one worker is dead in coldstart status and stays dead: it does not come back by itself, as a frozen or cut-off worker does " +
			"when its fault ends; the requests it held were lost with it, and once its lease expired placement gave its sandboxes away and " +
			"traffic ran on the other workers",
	},
	{
		Name: "zombie-worker", Title: "requests hang on one worker",
		Choices: []string{"worker-crash", "worker-zombie", "nats-down", "placement-quorum", "account-limit"},
		Right:   "worker-zombie", Anchor: "zombie-worker", Duration: "~15s",
		Signal: "requests routed to one worker hung instead of failing fast, the worker was declared dead, and then it came back by itself " +
			"reporting invocations as fenced: it had been frozen past its lease and killed the work it could no longer own",
	},
	{
		Name: "partitioned-worker", Title: "one worker's requests time out",
		Choices: []string{"worker-crash", "worker-partition", "handler-bug", "placement-leader", "redis-down"},
		Right:   "worker-partition", Anchor: "partitioned-worker", Duration: "~10s",
		Signal: "requests routed to one worker hung until the caller gave up (a crash fails them at once), membership declared it dead, " +
			"and it rejoined by itself once its network returned, without a restart",
	},
	{
		Name: "deploy-at-peak", Title: "p99 jumps with no errors",
		Choices: []string{"account-limit", "placement-leader", "deploy", "worker-crash", "handler-bug"},
		Right:   "deploy", Anchor: "deploy-at-peak", Duration: "~3s",
		Signal: "a burst of cold starts on a function that had a warm pool, every one of them on the new revision, with no failures: " +
			"a new revision never runs in an old sandbox, so the whole warm pool is replaced at once",
	},
	{
		Name: "throttle-storm", Title: "429s under a surge",
		Choices: []string{"reserved-cap", "placement-quorum", "account-limit", "worker-crash", "nats-down"},
		Right:   "account-limit", Anchor: "throttle-storm", Duration: "~3s",
		Signal: "429 TooManyRequestsException with Reason ConcurrentInvocationLimitExceeded while the account's in-flight stood at its limit " +
			"(coldstart status): the account, not one function, is full",
	},
	{
		Name: "reserved-provisioned", Title: "a function throttles with the account far from its limit",
		Choices: []string{"account-limit", "reserved-cap", "deploy", "placement-quorum", "handler-bug"},
		Right:   "reserved-cap", Anchor: "reserved-provisioned-mismatch", Duration: "~3s",
		Signal: "429 with Reason ReservedFunctionConcurrentInvocationLimitExceeded while the account had room: the function's reservation " +
			"is below its traffic, and PutProvisionedConcurrencyConfig above the reservation is refused (400), so the seed's " +
			"\"provisioned 100, reserved 50\" cannot even be configured here",
	},
	{
		Name: "redis-down", Title: "one function fails, the others are fine",
		Choices: []string{"handler-bug", "redis-down", "nats-down", "worker-crash", "reserved-cap"},
		Right:   "redis-down", Anchor: "redis-down", Duration: "~6s",
		Signal: "only the function with platform idempotency on failed, with IdempotencyStoreUnavailableException (fail closed: no handler ran " +
			"without its record), while functions without idempotency kept succeeding",
	},
	{
		Name: "nats-down", Title: "everything fails at once",
		Choices: []string{"placement-quorum", "nats-down", "worker-crash", "redis-down", "account-limit"},
		Right:   "nats-down", Anchor: "nats-down", Duration: "~12s",
		Signal: "warm and cold invocations failed alike while the gateways still answered HTTP: every invocation crosses NATS, " +
			"only the cold ones need placement",
	},
}

// SpecByName returns the drill called name.
func SpecByName(name string) (Spec, bool) {
	for _, s := range Specs {
		if s.Name == name {
			return s, true
		}
	}
	return Spec{}, false
}
