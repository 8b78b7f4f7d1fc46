package process

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
)

const (
	hdrRequestID     = "Lambda-Runtime-Aws-Request-Id"
	hdrDeadline      = "Lambda-Runtime-Deadline-Ms"
	hdrARN           = "Lambda-Runtime-Invoked-Function-Arn"
	hdrTrace         = "Lambda-Runtime-Trace-Id"
	hdrClientContext = "Lambda-Runtime-Client-Context"
	hdrCognito       = "Lambda-Runtime-Cognito-Identity"
	hdrErrorType     = "Lambda-Runtime-Function-Error-Type"
	hdrErrorBody     = "Lambda-Runtime-Function-Error-Body"
	hdrExtName       = "Lambda-Extension-Name"
	hdrExtID         = "Lambda-Extension-Identifier"
	hdrExtErrorType  = "Lambda-Extension-Function-Error-Type"
)

func (s *Sandbox) routes() http.Handler {
	m := http.NewServeMux()
	m.HandleFunc("GET /2018-06-01/runtime/invocation/next", s.handleNext)
	m.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/response", s.handleResponse)
	m.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/error", s.handleError)
	m.HandleFunc("POST /2018-06-01/runtime/init/error", s.handleInitError)
	m.HandleFunc("POST /2020-01-01/extension/register", s.handleRegister)
	m.HandleFunc("GET /2020-01-01/extension/event/next", s.handleExtNext)
	m.HandleFunc("POST /2020-01-01/extension/init/error", s.handleExtInitError)
	m.HandleFunc("POST /2020-01-01/extension/exit/error", s.handleExtExitError)
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		apiError(w, http.StatusNotFound, "InvalidRequest", "unknown path "+r.URL.Path)
	})
	return m
}

func apiError(w http.ResponseWriter, code int, typ, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(errorBody(typ, msg))
}

func accepted(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_, _ = io.WriteString(w, `{"status":"OK"}`)
}

// checkInitLocked ends init once the runtime and every registered extension wait
// for their next event.
func (s *Sandbox) checkInitLocked() {
	if s.initComplete || !s.runtimeSeen {
		return
	}
	for _, e := range s.extList {
		if !e.ready {
			return
		}
	}
	s.initComplete = true
	close(s.initDone)
}

// handleNext blocks until an event arrives; it never times out, as the Runtime API
// requires. A call after an answer also completes that invocation.
func (s *Sandbox) handleNext(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.runtimeSeen = true
	if c := s.cur; c != nil && c.finished && !c.settledOK {
		c.settledOK = true
		close(c.settled)
	}
	s.checkInitLocked()
	s.mu.Unlock()
	var c *call
	select {
	case c = <-s.deliver:
	case <-r.Context().Done():
		return
	case <-s.closedCh:
		return
	}
	s.mu.Lock()
	c.delivered = timeNow()
	var ev []byte
	for _, e := range s.extList {
		if e.invoke {
			if ev == nil {
				ev, _ = json.Marshal(map[string]any{
					"eventType":          "INVOKE",
					"deadlineMs":         c.inv.Deadline.UnixMilli(),
					"requestId":          c.inv.RequestID,
					"invokedFunctionArn": c.inv.InvokedARN,
					"tracing":            map[string]string{"type": "X-Amzn-Trace-Id", "value": c.inv.TraceID},
				})
			}
			select {
			case e.events <- ev:
			default:
			}
		}
	}
	s.mu.Unlock()
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set(hdrRequestID, c.inv.RequestID)
	h.Set(hdrDeadline, strconv.FormatInt(c.inv.Deadline.UnixMilli(), 10))
	h.Set(hdrARN, c.inv.InvokedARN)
	if c.inv.TraceID != "" {
		h.Set(hdrTrace, c.inv.TraceID)
	}
	if c.inv.ClientContext != "" {
		h.Set(hdrClientContext, c.inv.ClientContext)
	}
	if c.inv.CognitoIdentity != "" {
		h.Set(hdrCognito, c.inv.CognitoIdentity)
	}
	h.Set("Content-Length", strconv.Itoa(len(c.inv.Payload)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(c.inv.Payload)
}

// current returns the delivered, unanswered invocation with this id.
func (s *Sandbox) current(id string) *call {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.cur
	if c == nil || c.inv.RequestID != id || c.delivered.IsZero() || c.finished {
		return nil
	}
	return c
}

func (s *Sandbox) handleResponse(w http.ResponseWriter, r *http.Request) {
	c := s.current(r.PathValue("id"))
	if c == nil {
		apiError(w, http.StatusBadRequest, "InvalidRequestID", "Invalid request ID")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxResponseBytes+1))
	if err != nil {
		apiError(w, http.StatusBadRequest, "InvalidRequest", "reading body: "+err.Error())
		return
	}
	if len(body) > MaxResponseBytes {
		const t = "Function.ResponseSizeTooLarge"
		msg := "Response payload size exceeded maximum allowed payload size (" + strconv.Itoa(MaxResponseBytes) + " bytes)."
		s.finish(c, errorBody(t, msg), t)
		apiError(w, http.StatusRequestEntityTooLarge, "RequestEntityTooLarge", "Exceeded maximum allowed payload size ("+strconv.Itoa(MaxResponseBytes)+" bytes).")
		return
	}
	// aws-lambda-go reports an error met while streaming a response in trailers.
	if t := r.Trailer.Get(hdrErrorType); t != "" {
		eb, _ := base64.StdEncoding.DecodeString(r.Trailer.Get(hdrErrorBody))
		typ, payload := functionError(eb, t)
		if !s.finish(c, payload, typ) {
			apiError(w, http.StatusBadRequest, "InvalidRequestID", "Invalid request ID")
			return
		}
		accepted(w)
		return
	}
	if !s.finish(c, body, "") {
		apiError(w, http.StatusBadRequest, "InvalidRequestID", "Invalid request ID")
		return
	}
	accepted(w)
}

func (s *Sandbox) handleError(w http.ResponseWriter, r *http.Request) {
	c := s.current(r.PathValue("id"))
	if c == nil {
		apiError(w, http.StatusBadRequest, "InvalidRequestID", "Invalid request ID")
		return
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, MaxResponseBytes))
	typ, payload := functionError(body, r.Header.Get(hdrErrorType))
	if !s.finish(c, payload, typ) {
		apiError(w, http.StatusBadRequest, "InvalidRequestID", "Invalid request ID")
		return
	}
	accepted(w)
}

func (s *Sandbox) failInit(typ, msg string) bool {
	s.mu.Lock()
	done := s.initComplete
	s.mu.Unlock()
	if done {
		return false
	}
	select {
	case s.initErr <- &Error{Type: typ, Message: msg}:
	default:
	}
	return true
}

func (s *Sandbox) handleInitError(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	typ, payload := functionError(body, r.Header.Get(hdrErrorType))
	var doc struct {
		Message string `json:"errorMessage"`
	}
	_ = json.Unmarshal(payload, &doc)
	if !s.failInit(typ, doc.Message) {
		apiError(w, http.StatusForbidden, "InvalidStateTransition", "init/error is only valid during init")
		return
	}
	accepted(w)
}

func (s *Sandbox) handleRegister(w http.ResponseWriter, r *http.Request) {
	name := r.Header.Get(hdrExtName)
	if name == "" {
		apiError(w, http.StatusBadRequest, "InvalidRequest", "missing "+hdrExtName)
		return
	}
	var req struct {
		Events []string `json:"events"`
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if len(body) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			apiError(w, http.StatusBadRequest, "InvalidRequest", "bad body: "+err.Error())
			return
		}
	}
	e := &extension{id: newRequestID(), name: name, events: make(chan []byte, 8)}
	for _, ev := range req.Events {
		switch ev {
		case "INVOKE":
			e.invoke = true
		case "SHUTDOWN":
			e.shut = true
		default:
			apiError(w, http.StatusBadRequest, "InvalidEventType", "unknown event "+ev)
			return
		}
	}
	s.mu.Lock()
	switch {
	case s.initComplete:
		s.mu.Unlock()
		apiError(w, http.StatusForbidden, "Extension.InvalidExtensionRegistration", "extensions register during init only")
		return
	case len(s.extList) >= maxExtensions:
		s.mu.Unlock()
		apiError(w, http.StatusBadRequest, "Extension.TooManyExtensions", "at most 10 extensions")
		return
	}
	s.exts[e.id] = e
	s.extList = append(s.extList, e)
	s.mu.Unlock()
	w.Header().Set(hdrExtID, e.id)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	b, _ := json.Marshal(map[string]string{
		"functionName":    s.cfg.FunctionName,
		"functionVersion": s.cfg.Version,
		"handler":         s.cfg.Handler,
		"accountId":       s.cfg.AccountID,
	})
	_, _ = w.Write(b)
}

func (s *Sandbox) extension(r *http.Request) *extension {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.exts[r.Header.Get(hdrExtID)]
}

// handleExtNext blocks until an event the extension registered for; one that
// registered for none (aws-lambda-go's SIGTERM helper) waits until the sandbox ends.
func (s *Sandbox) handleExtNext(w http.ResponseWriter, r *http.Request) {
	e := s.extension(r)
	if e == nil {
		apiError(w, http.StatusForbidden, "Extension.Forbidden", "unknown "+hdrExtID)
		return
	}
	s.mu.Lock()
	e.ready = true
	s.checkInitLocked()
	s.mu.Unlock()
	select {
	case ev := <-e.events:
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set(hdrExtID, e.id)
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(ev)
	case <-r.Context().Done():
	case <-s.closedCh:
	}
}

func (s *Sandbox) handleExtInitError(w http.ResponseWriter, r *http.Request) {
	e := s.extension(r)
	if e == nil {
		apiError(w, http.StatusForbidden, "Extension.Forbidden", "unknown "+hdrExtID)
		return
	}
	typ := r.Header.Get(hdrExtErrorType)
	if typ == "" {
		typ = "Extension.InitError"
	}
	if !s.failInit(cleanType(typ), "extension "+e.name+" failed to initialize") {
		apiError(w, http.StatusForbidden, "InvalidStateTransition", "init/error is only valid during init")
		return
	}
	accepted(w)
}

// handleExtExitError: an extension that fails ends its environment, as in Lambda
// (the next invoke cold-starts).
func (s *Sandbox) handleExtExitError(w http.ResponseWriter, r *http.Request) {
	e := s.extension(r)
	if e == nil {
		apiError(w, http.StatusForbidden, "Extension.Forbidden", "unknown "+hdrExtID)
		return
	}
	typ := r.Header.Get(hdrExtErrorType)
	if typ == "" {
		typ = "Extension.ExitError"
	}
	if !s.failInit(cleanType(typ), "extension "+e.name+" exited with an error") {
		s.mu.Lock()
		s.dead = true
		s.mu.Unlock()
	}
	accepted(w)
}
