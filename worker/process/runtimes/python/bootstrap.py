# Runtime API client for python3.x functions: loads the handler named by _HANDLER
# from LAMBDA_TASK_ROOT and serves events from the Runtime API until killed.
import importlib
import json
import os
import sys
import time
import traceback
import urllib.error
import urllib.request

API = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime"

# Lambda's python streams each line as it is printed.
try:
    sys.stdout.reconfigure(line_buffering=True)
    sys.stderr.reconfigure(line_buffering=True)
except Exception:
    pass

# No proxy: the Runtime API is on loopback and a user's HTTP_PROXY must not catch it.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _post(path, body, headers=None):
    req = urllib.request.Request(API + path, data=body, method="POST")
    req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with _opener.open(req) as r:
            r.read()
    except urllib.error.HTTPError as e:
        # 4xx on /response (payload too large): Lambda reports it; the loop goes on.
        e.read()


def _user_frames(exc):
    # The client's own frames are not the function's: Lambda shows user code only.
    me = os.path.abspath(__file__)
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if os.path.abspath(f.filename) != me]
    return traceback.format_list(frames)


def _error_doc(exc):
    return {
        "errorMessage": str(exc),
        "errorType": type(exc).__name__,
        "stackTrace": _user_frames(exc),
    }


def _init_error(error_type, message, exc=None):
    doc = {"errorMessage": message, "errorType": error_type}
    if exc is not None:
        doc["stackTrace"] = _user_frames(exc)
    print("[ERROR] %s: %s" % (error_type, message), file=sys.stderr)
    _post("/init/error", json.dumps(doc).encode(), {"Lambda-Runtime-Function-Error-Type": error_type})
    sys.exit(1)


class LambdaContext:
    def __init__(self, request_id, deadline_ms, arn, client_context, identity):
        self.aws_request_id = request_id
        self.invoked_function_arn = arn
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.client_context = client_context
        self.identity = identity
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self):
        return max(0, int(self._deadline_ms - time.time() * 1000))


def _load():
    handler = os.environ.get("_HANDLER", "")
    mod_name, _, fn_name = handler.rpartition(".")
    if not mod_name or not fn_name:
        _init_error("Runtime.MalformedHandlerName", "Bad handler '%s': not enough values to unpack (expected 2, got 1)" % handler)
    sys.path.insert(0, os.environ["LAMBDA_TASK_ROOT"])
    try:
        mod = importlib.import_module(mod_name.replace("/", "."))
    except SyntaxError as e:
        _init_error("Runtime.UserCodeSyntaxError", "Syntax error in module '%s': %s" % (mod_name, e), e)
    except Exception as e:
        _init_error("Runtime.ImportModuleError", "Unable to import module '%s': %s" % (mod_name, e), e)
    fn = getattr(mod, fn_name, None)
    if fn is None or not callable(fn):
        _init_error("Runtime.HandlerNotFound", "Handler '%s' missing on module '%s'" % (fn_name, mod_name))
    return fn


def main():
    fn = _load()
    while True:
        with _opener.open(API + "/invocation/next") as r:
            event_body = r.read()
            h = r.headers
        request_id = h.get("Lambda-Runtime-Aws-Request-Id")
        deadline_ms = int(h.get("Lambda-Runtime-Deadline-Ms", "0"))
        trace = h.get("Lambda-Runtime-Trace-Id")
        if trace:
            os.environ["_X_AMZN_TRACE_ID"] = trace
        else:
            os.environ.pop("_X_AMZN_TRACE_ID", None)
        cc = h.get("Lambda-Runtime-Client-Context")
        ci = h.get("Lambda-Runtime-Cognito-Identity")
        ctx = LambdaContext(request_id, deadline_ms, h.get("Lambda-Runtime-Invoked-Function-Arn"),
                            json.loads(cc) if cc else None, json.loads(ci) if ci else None)
        try:
            event = json.loads(event_body) if event_body else {}
            result = fn(event, ctx)
            body = json.dumps(result).encode()
        except Exception as e:
            doc = _error_doc(e)
            print("[ERROR] %s: %s" % (doc["errorType"], doc["errorMessage"]), file=sys.stderr)
            _post("/invocation/%s/error" % request_id, json.dumps(doc).encode(),
                  {"Lambda-Runtime-Function-Error-Type": "Unhandled"})
            continue
        _post("/invocation/%s/response" % request_id, body)


if __name__ == "__main__":
    main()
