"""A python3.12 Lambda function: handler "app.handler"."""

import json


def handler(event, context):
    name = (event or {}).get("name") or "world"
    # print() goes to the function's log stream (and LogResult with --log-type Tail).
    print(json.dumps({"greeting": name, "request_id": context.aws_request_id}))
    return {
        "message": f"Hello, {name}!",
        "request_id": context.aws_request_id,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "memory_limit_in_mb": int(context.memory_limit_in_mb),
        "remaining_ms": context.get_remaining_time_in_millis(),
    }
