// Runtime API client for nodejs functions: loads the handler named by _HANDLER
// from LAMBDA_TASK_ROOT and serves events from the Runtime API until killed.
"use strict";
const http = require("http");
const path = require("path");
const fs = require("fs");
const { pathToFileURL } = require("url");

const [host, port] = process.env.AWS_LAMBDA_RUNTIME_API.split(":");
const base = "/2018-06-01/runtime";
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

function request(method, p, body, headers) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host, port, path: base + p, method, agent, headers: headers || {} },
      (res) => {
        const chunks = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

// The client's own frames and node internals are not the function's.
function userStack(err) {
  return String(err.stack || "")
    .split("\n")
    .slice(1)
    .map((l) => l.trim())
    .filter((l) => l && !l.includes(__filename) && !l.includes("node:internal") && !l.includes("new Promise (<anonymous>)"));
}

function errorDoc(err) {
  if (!(err instanceof Error)) {
    return { errorType: "Error", errorMessage: String(err), stackTrace: [] };
  }
  return {
    errorType: err.name || (err.constructor && err.constructor.name) || "Error",
    errorMessage: err.message,
    stackTrace: userStack(err),
  };
}

async function initError(type, message, err) {
  const doc = { errorType: type, errorMessage: message };
  if (err && err.stack) doc.stackTrace = userStack(err);
  console.error(`[ERROR] ${type}: ${message}`);
  await request("POST", "/init/error", JSON.stringify(doc), {
    "Content-Type": "application/json",
    "Lambda-Runtime-Function-Error-Type": type,
  });
  process.exit(1);
}

async function load() {
  const handler = process.env._HANDLER || "";
  const dot = handler.lastIndexOf(".");
  if (dot <= 0 || dot === handler.length - 1) {
    await initError("Runtime.MalformedHandlerName", `Bad handler '${handler}'`);
  }
  const modName = handler.slice(0, dot);
  const fnName = handler.slice(dot + 1);
  const root = process.env.LAMBDA_TASK_ROOT;
  let file = null;
  for (const ext of [".js", ".mjs", ".cjs", "/index.js"]) {
    const f = path.join(root, modName + ext);
    if (fs.existsSync(f)) {
      file = f;
      break;
    }
  }
  let mod;
  try {
    if (file === null) throw new Error(`Cannot find module '${modName}'`);
    mod = await import(pathToFileURL(file).href);
  } catch (e) {
    if (e instanceof SyntaxError) {
      await initError("Runtime.UserCodeSyntaxError", `${e.name}: ${e.message}`, e);
    }
    await initError("Runtime.ImportModuleError", `Error: ${e.message}`, e);
  }
  let fn = mod[fnName];
  if (typeof fn !== "function" && mod.default) fn = mod.default[fnName];
  if (typeof fn !== "function") {
    await initError("Runtime.HandlerNotFound", `${modName}.${fnName} is undefined or not exported`);
  }
  return fn;
}

function invokeHandler(fn, event, context) {
  return new Promise((resolve, reject) => {
    let settled = false;
    const callback = (err, result) => {
      if (settled) return;
      settled = true;
      if (err !== undefined && err !== null) reject(err);
      else resolve(result);
    };
    try {
      const r = fn(event, context, callback);
      if (r && typeof r.then === "function") {
        r.then((v) => callback(null, v), (e) => callback(e === undefined || e === null ? new Error(String(e)) : e));
      } else if (fn.length < 3) {
        callback(null, r);
      }
    } catch (e) {
      callback(e);
    }
  });
}

async function main() {
  const fn = await load();
  for (;;) {
    const next = await request("GET", "/invocation/next");
    const h = next.headers;
    const id = h["lambda-runtime-aws-request-id"];
    const deadline = Number(h["lambda-runtime-deadline-ms"]);
    if (h["lambda-runtime-trace-id"]) process.env._X_AMZN_TRACE_ID = h["lambda-runtime-trace-id"];
    else delete process.env._X_AMZN_TRACE_ID;
    const context = {
      awsRequestId: id,
      invokedFunctionArn: h["lambda-runtime-invoked-function-arn"],
      functionName: process.env.AWS_LAMBDA_FUNCTION_NAME,
      functionVersion: process.env.AWS_LAMBDA_FUNCTION_VERSION,
      memoryLimitInMB: process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
      logGroupName: process.env.AWS_LAMBDA_LOG_GROUP_NAME,
      logStreamName: process.env.AWS_LAMBDA_LOG_STREAM_NAME,
      clientContext: h["lambda-runtime-client-context"] ? JSON.parse(h["lambda-runtime-client-context"]) : undefined,
      identity: h["lambda-runtime-cognito-identity"] ? JSON.parse(h["lambda-runtime-cognito-identity"]) : undefined,
      callbackWaitsForEmptyEventLoop: true,
      getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
    };
    try {
      const event = next.body.length ? JSON.parse(next.body.toString()) : {};
      const result = await invokeHandler(fn, event, context);
      const body = result === undefined ? "null" : JSON.stringify(result);
      await request("POST", `/invocation/${id}/response`, body, { "Content-Type": "application/json" });
    } catch (e) {
      const doc = errorDoc(e);
      console.error(`[ERROR] ${doc.errorType}: ${doc.errorMessage}`);
      await request("POST", `/invocation/${id}/error`, JSON.stringify(doc), {
        "Content-Type": "application/json",
        "Lambda-Runtime-Function-Error-Type": "Unhandled",
      });
    }
  }
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : String(e));
  process.exit(1);
});
