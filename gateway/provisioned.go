package gateway

import (
	"net/http"
	"sort"

	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/wire"
)

// Provisioned concurrency: configs live in the ledger, placement's leader
// pre-warms their sandboxes, and the status a caller sees is computed
// from the ready sandboxes placement counts (IN_PROGRESS until all are
// ready, FAILED when an init failed and none replaced it yet).

func provisionedStatus(sn *wire.Snapshot, f wire.Function, q string, pc wire.ProvisionedConfig) api.ProvisionedConcurrencyConfig {
	v := q
	if a := f.Aliases[q]; a != nil {
		v = a.FunctionVersion
	}
	ready := 0
	if sn != nil {
		ready = sn.Provisioned[wire.FunctionKey(f.Account, f.Name)+"/"+v]
	}
	ready = min(ready, pc.Requested)
	out := api.ProvisionedConcurrencyConfig{
		FunctionArn:                              arnOf(f.Account, f.Name) + ":" + q,
		RequestedProvisionedConcurrentExecutions: pc.Requested,
		AvailableProvisionedConcurrentExecutions: ready,
		AllocatedProvisionedConcurrentExecutions: ready,
		Status:                                   "IN_PROGRESS",
		LastModified:                             lastModified(pc.ModifiedNs),
	}
	switch {
	case ready >= pc.Requested:
		out.Status = "READY"
	case pc.Failure != "":
		out.Status, out.StatusReason = "FAILED", pc.Failure
	}
	return out
}

// fresh reads placement's current view of a function (provisioned status
// changes without any write by this gateway).
func (g *Gateway) fresh(w http.ResponseWriter, r *http.Request, acct, name string) (*wire.Snapshot, *wire.Function, bool) {
	sn, err := g.pl.Read(r.Context())
	if err != nil {
		writeError(w, placementError(err))
		return nil, nil, false
	}
	for i := range sn.Functions {
		if f := &sn.Functions[i]; f.Account == acct && f.Name == name {
			return sn, f, true
		}
	}
	writeError(w, errNotFound("Function not found: "+arnOf(acct, name)))
	return nil, nil, false
}

func (g *Gateway) handlePutProvisioned(w http.ResponseWriter, r *http.Request) {
	e, acct, ref, ok := g.functionRef(w, r)
	if !ok {
		return
	}
	var in api.ProvisionedInput
	if lerr := g.decodeBody(r, &in); lerr != nil {
		writeError(w, lerr)
		return
	}
	n := in.ProvisionedConcurrentExecutions
	resp, err := g.askPlacement(r.Context(), wire.Request{Op: wire.OpSetProvisioned, Provisioned: &wire.SetProvisioned{Account: acct, Function: e.fn.Name, Qualifier: ref.Qualifier, Requested: &n}}, controlBudget)
	if err != nil {
		writeError(w, placementError(err))
		return
	}
	g.cache.put(*resp.Function, resp.Index)
	pc := resp.Function.Provisioned[ref.Qualifier]
	out := provisionedStatus(nil, *resp.Function, ref.Qualifier, *pc)
	out.FunctionArn = ""
	writeJSON(w, http.StatusAccepted, out)
}

func (g *Gateway) handleGetProvisioned(w http.ResponseWriter, r *http.Request) {
	e, acct, ref, ok := g.functionRef(w, r)
	if !ok {
		return
	}
	sn, f, ok := g.fresh(w, r, acct, e.fn.Name)
	if !ok {
		return
	}
	if r.URL.Query().Get("List") == "ALL" {
		qs := make([]string, 0, len(f.Provisioned))
		for q := range f.Provisioned {
			qs = append(qs, q)
		}
		sort.Strings(qs)
		out := []api.ProvisionedConcurrencyConfig{}
		for _, q := range qs {
			out = append(out, provisionedStatus(sn, *f, q, *f.Provisioned[q]))
		}
		writeJSON(w, http.StatusOK, map[string]any{"ProvisionedConcurrencyConfigs": out})
		return
	}
	pc := f.Provisioned[ref.Qualifier]
	if pc == nil {
		writeError(w, &lambdaError{http.StatusNotFound, "ProvisionedConcurrencyConfigNotFoundException", "No Provisioned Concurrency Config found for this function", ""})
		return
	}
	out := provisionedStatus(sn, *f, ref.Qualifier, *pc)
	out.FunctionArn = ""
	writeJSON(w, http.StatusOK, out)
}

func (g *Gateway) handleDeleteProvisioned(w http.ResponseWriter, r *http.Request) {
	e, acct, ref, ok := g.functionRef(w, r)
	if !ok {
		return
	}
	resp, err := g.askPlacement(r.Context(), wire.Request{Op: wire.OpSetProvisioned, Provisioned: &wire.SetProvisioned{Account: acct, Function: e.fn.Name, Qualifier: ref.Qualifier}}, controlBudget)
	if err != nil {
		writeError(w, placementError(err))
		return
	}
	g.cache.put(*resp.Function, resp.Index)
	w.WriteHeader(http.StatusNoContent)
}

// unimplemented names Lambda operations this gateway does not implement,
// by method and path prefix, so that a caller learns which one it hit
// instead of a validation error about another.
var unimplemented = []struct{ method, prefix, contains, op string }{
	{"POST", "/2015-03-31/functions/", "/policy", "AddPermission"},
	{"GET", "/2015-03-31/functions/", "/policy", "GetPolicy"},
	{"DELETE", "/2015-03-31/functions/", "/policy", "RemovePermission"},
	{"POST", "/2017-03-31/tags/", "", "TagResource"},
	{"GET", "/2017-03-31/tags/", "", "ListTags"},
	{"DELETE", "/2017-03-31/tags/", "", "UntagResource"},
	{"POST", "/2021-10-31/functions/", "/url", "CreateFunctionUrlConfig"},
	{"GET", "/2021-10-31/functions/", "/url", "GetFunctionUrlConfig"},
	{"PUT", "/2021-10-31/functions/", "/url", "UpdateFunctionUrlConfig"},
	{"DELETE", "/2021-10-31/functions/", "/url", "DeleteFunctionUrlConfig"},
	{"GET", "/2018-10-31/layers", "", "ListLayers/GetLayerVersion"},
	{"POST", "/2018-10-31/layers/", "", "PublishLayerVersion"},
	{"", "/2015-03-31/event-source-mappings", "", "EventSourceMapping operations"},
	{"", "/2020-06-30/functions/", "/code-signing-config", "FunctionCodeSigningConfig operations"},
	{"", "/2020-04-22/code-signing-configs", "", "CodeSigningConfig operations"},
	{"", "/2021-11-15/functions/", "/response-streaming-invocations", "InvokeWithResponseStream"},
	{"POST", "/2014-11-13/functions/", "/invoke-async", "InvokeAsync"},
	{"PUT", "/2020-06-30/functions/", "/runtime-management-config", "PutRuntimeManagementConfig"},
	{"PUT", "/2021-10-31/functions/", "/recursion-config", "PutFunctionRecursionConfig"},
}

func (g *Gateway) handleUnknown(w http.ResponseWriter, r *http.Request) {
	for _, u := range unimplemented {
		if (u.method == "" || u.method == r.Method) && len(r.URL.Path) >= len(u.prefix) && r.URL.Path[:len(u.prefix)] == u.prefix && (u.contains == "" || containsPath(r.URL.Path, u.contains)) {
			writeError(w, &lambdaError{http.StatusNotImplemented, "UnsupportedOperationException", u.op + " is not implemented by this coldstart gateway (" + r.Method + " " + r.URL.Path + ")", ""})
			return
		}
	}
	writeError(w, &lambdaError{http.StatusNotFound, "UnknownOperationException", "Unknown operation " + r.Method + " " + r.URL.Path, ""})
}

func containsPath(p, sub string) bool {
	for i := 0; i+len(sub) <= len(p); i++ {
		if p[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}
