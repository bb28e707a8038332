"""ALB-fidelity checks against a running twin (scripts/check-lb.sh runs this).

    python3 scripts/lib/check_lb.py checks --lb http://127.0.0.1:8080 --twin-dir target/twin [--keys FILE] [--idle]
    python3 scripts/lib/check_lb.py echo --port PORT        # a target that echoes its request headers
    python3 scripts/lib/check_lb.py forwarded --lb URL --lb-port PORT --echo-id ID

`checks` asks the balancer what a client can see: path routing and the 404 of
the default rule, round robin over every task of a group, a body over 1 MiB
answered by the task (413 with its X-Request-Id and X-Worker-Id), the
X-Amzn-Trace-Id the tasks log (added in the ALB's format, or the client's
passed through), no nginx version in the Server header, access control
through the balancer (with the keys of --keys, default TWIN_DIR/keys.env, which
scripts/up.sh writes: issuing without a key gets 401 with WWW-Authenticate:
Bearer, with the issuer's key 201; the verifier sees the whole credential, an
anonymous caller its public view), and with --idle a keep-alive connection idle
for 65 s that still serves a request.

`echo` and `forwarded` check what a target sees, through a stand-in target that
check-lb.sh registers in the issuance target group for a moment: X-Forwarded-
For/-Proto/-Port, the Host header, and the trace id header itself.

Standard library only. Prints one line per check and a total; exits 1 when
any check failed.
"""

import argparse
import glob
import http.client
import json
import os
import re
import socket
import sys
import time
import urllib.parse
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TRACE_ROOT = re.compile(r"^Root=1-([0-9a-f]{8})-[0-9a-f]{24}$")
results = []


def check(name, ok, detail=""):
    results.append(ok)
    print(f"{'ok  ' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}", flush=True)


def connect(lb):
    u = urllib.parse.urlsplit(lb)
    return http.client.HTTPConnection(u.hostname, u.port or 80, timeout=10)


def request(conn, method, path, body=None, headers=None):
    h = {"Content-Type": "application/json"} if body is not None else {}
    h.update(headers or {})
    conn.request(method, path, body=body, headers=h)
    r = conn.getresponse()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()


def read_keys(path):
    """ISSUER_KEY and VERIFIER_KEY from scripts/up.sh's keys file; {} when there is none."""
    keys = {}
    try:
        with open(path) as f:
            for line in f:
                name, _, value = line.strip().partition("=")
                keys[name] = value
    except FileNotFoundError:
        pass
    return keys


def bearer(key):
    return {"Authorization": f"Bearer {key}"} if key else {}


def access_control(conn, keys):
    """Issuance needs a key; what verification shows depends on who asks."""
    status, headers, body = request(conn, "GET", "/issuance/health")
    if b'"auth":"off"' in body:
        check("access control: AUTH_MODE=off says so in /health", not keys.get("ISSUER_KEY"), "keys file present too" if keys.get("ISSUER_KEY") else "")
        return
    if not keys.get("ISSUER_KEY") or not keys.get("VERIFIER_KEY"):
        check("access control: the twin's keys file names an issuer and a verifier key", False, "run scripts/up.sh (it writes TWIN_DIR/keys.env)")
        return
    stamp = uuid.uuid4().hex[:12]
    credential = json.dumps({"name": f"check-lb {stamp}", "email": f"check-lb+{stamp}@example.com", "credentialType": "check-lb", "metadata": {"source": "check-lb"}})
    status, headers, body = request(conn, "POST", "/issuance/credentials", body=credential)
    check("issuing without a key gets 401 with WWW-Authenticate: Bearer", status == 401 and headers.get("www-authenticate") == "Bearer", f"{status}, WWW-Authenticate {headers.get('www-authenticate')}")
    status, headers, body = request(conn, "POST", "/issuance/credentials", body=credential, headers=bearer("kc_" + "0" * 64))
    check("issuing with an unknown key gets 401", status == 401, f"{status}")
    status, headers, body = request(conn, "POST", "/issuance/credentials", body=credential, headers=bearer(keys["ISSUER_KEY"]))
    try:
        issued = json.loads(body)["credential"]
    except (ValueError, KeyError, TypeError):
        issued = {}
    check("issuing with the issuer's key gets 201, the issuer named", status == 201 and issued.get("issuer") == keys.get("ISSUER_NAME"), f"{status}, issuer {issued.get('issuer')}")
    if not issued.get("id"):
        return
    ask = json.dumps({"id": issued["id"]})
    status, _, body = request(conn, "POST", "/verification/credentials", body=ask, headers=bearer(keys["VERIFIER_KEY"]))
    whole = json.loads(body).get("credential", {}) if status == 200 else {}
    check("the verifier's key sees the whole credential", whole.get("email") == issued.get("email") and "metadata" in whole, f"{status}, fields {sorted(whole)}")
    status, _, body = request(conn, "POST", "/verification/credentials", body=ask)
    public = json.loads(body).get("credential", {}) if status == 200 else {}
    check("without a key, the public view only", status == 200 and public.get("id") == issued["id"] and "email" not in public and "name" not in public, f"{status}, fields {sorted(public)}")


def round_robin(conn, group, expected):
    """Each task of the group answers the same share of 12 requests per task."""
    seen = Counter()
    for _ in range(12 * expected):
        status, headers, _ = request(conn, "GET", f"/{group}/health")
        if status == 200:
            seen[headers.get("x-worker-id", "?")] += 1
    even = len(seen) == expected and max(seen.values()) - min(seen.values()) <= 1
    check(f"round robin over the {group} tasks", even, ", ".join(f"{k} {v}" for k, v in sorted(seen.items())))


def oversized_body(lb, key):
    """Over 1 MiB: the task answers (413, its headers and JSON), not the balancer. With
    the issuer's key, or the task would refuse it with a 401 before the body."""
    u = urllib.parse.urlsplit(lb)
    body = b'{"name":"' + b"x" * (2 * 1024 * 1024) + b'"}'
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    head = (
        f"POST /issuance/credentials HTTP/1.1\r\nHost: {u.hostname}\r\nContent-Type: application/json\r\n{auth}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    s = socket.create_connection((u.hostname, u.port or 80), timeout=10)
    try:
        s.sendall(head + body)
    except OSError:
        pass  # the answer may come (and the connection close) before the whole body is sent
    r = http.client.HTTPResponse(s)
    try:
        r.begin()
        status, headers, payload = r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    except (OSError, http.client.HTTPException) as e:
        check("a body over 1 MiB gets the task's 413", False, f"no answer ({e})")
        return
    finally:
        s.close()
    ok = status == 413 and "x-request-id" in headers and "x-worker-id" in headers and payload.startswith(b"{")
    check("a body over 1 MiB gets the task's 413", ok, f"{status}, X-Worker-Id {headers.get('x-worker-id')}, {payload[:80]!r}")


def logged_trace_id(twin_dir, request_id, timeout=3.0):
    """The trace_id the task logged for request_id (text or JSON access line)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for log in glob.glob(os.path.join(twin_dir, "*.log")):
            with open(log, errors="replace") as f:
                for line in f:
                    if request_id in line:
                        m = re.search(r'trace_id[=":]+([^ ",]+)', line)
                        return m.group(1) if m else None
        time.sleep(0.1)
    return None


def trace_ids(conn, twin_dir):
    status, headers, _ = request(conn, "GET", "/verification/health")
    logged = logged_trace_id(twin_dir, headers.get("x-request-id", "-"))
    fresh = bool(logged and TRACE_ROOT.match("Root=" + logged))
    if fresh:
        fresh = abs(int(logged.split("-")[1], 16) - time.time()) < 120
    check("X-Amzn-Trace-Id added in the ALB's format when the client sent none", fresh, f"task logged {logged}")
    mine = f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]}"
    status, headers, _ = request(conn, "GET", "/verification/health", headers={"X-Amzn-Trace-Id": mine})
    logged = logged_trace_id(twin_dir, headers.get("x-request-id", "-"))
    check("the client's X-Amzn-Trace-Id passes through unchanged", logged == mine[len("Root="):], f"sent {mine}, task logged {logged}")


def idle_connection(conn, seconds):
    request(conn, "GET", "/issuance/health")
    time.sleep(seconds)
    try:
        status, _, _ = request(conn, "GET", "/issuance/health")
    except (OSError, http.client.HTTPException) as e:
        check(f"a keep-alive connection idle for {seconds} s still serves", False, str(e))
        return
    check(f"a keep-alive connection idle for {seconds} s still serves", status == 200, f"status {status}")


def run_checks(args):
    started = time.monotonic()
    conn = connect(args.lb)
    for group in ("issuance", "verification"):
        status, headers, body = request(conn, "GET", f"/{group}/health")
        check(f"/{group}/ routes to the {group} tasks", status == 200 and headers.get("x-worker-id", "").startswith(group), f"{status}, X-Worker-Id {headers.get('x-worker-id')}")
    status, headers, body = request(conn, "GET", "/nothing/here")
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    check("any other path gets the default rule's JSON 404", status == 404 and doc == {"success": False, "message": "Not found"} and headers.get("content-type") == "application/json", f"{status} {body[:60]!r}")
    round_robin(conn, "issuance", args.issuance_tasks)
    round_robin(conn, "verification", args.verification_tasks)
    keys = read_keys(args.keys or os.path.join(args.twin_dir, "keys.env"))
    oversized_body(args.lb, keys.get("ISSUER_KEY"))
    status, headers, _ = request(conn, "GET", "/issuance/health")
    server = headers.get("server", "")
    check("no nginx version in the Server header", not re.search(r"\d", server), f"Server: {server or '(none)'}")
    trace_ids(conn, args.twin_dir)
    status, headers, body = request(conn, "POST", "/verification/credentials", body=json.dumps({"id": str(uuid.uuid4())}))
    check("a POST reaches a task and gets its answer", status == 404 and headers.get("x-worker-id", "").startswith("verification"), f"{status}")
    access_control(conn, keys)
    if args.idle:
        idle_connection(connect(args.lb), args.idle_seconds)
    print(f"load balancer checks: {results.count(True)} passed, {results.count(False)} failed ({time.monotonic() - started:.1f} s)")
    return 0 if all(results) else 1


class Echo(BaseHTTPRequestHandler):
    """Answers every request with its headers as JSON, like a task would answer."""

    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = json.dumps({k.lower(): v for k, v in self.headers.items()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Worker-Id", self.server.echo_id)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def run_echo(args):
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Echo)
    server.echo_id = args.echo_id
    print("ready", flush=True)
    server.serve_forever()


def run_forwarded(args):
    conn = connect(args.lb)
    seen = None
    for _ in range(20):
        status, headers, body = request(conn, "GET", "/issuance/health", headers={"Host": "twin.example.com"})
        if headers.get("x-worker-id") == args.echo_id:
            seen = json.loads(body)
            break
    if seen is None:
        check("the stand-in target gets requests once registered", False, "it never answered")
        return 1
    check("X-Forwarded-For names the client", seen.get("x-forwarded-for") == "127.0.0.1", str(seen.get("x-forwarded-for")))
    check("X-Forwarded-Proto and X-Forwarded-Port name the listener", seen.get("x-forwarded-proto") == "http" and seen.get("x-forwarded-port") == str(args.lb_port), f"{seen.get('x-forwarded-proto')}, {seen.get('x-forwarded-port')}")
    check("the Host header reaches the target", seen.get("host") == "twin.example.com", str(seen.get("host")))
    m = TRACE_ROOT.match(seen.get("x-amzn-trace-id", ""))
    check("the target sees X-Amzn-Trace-Id as Root=1-<8 hex>-<24 hex>", bool(m), str(seen.get("x-amzn-trace-id")))
    print(f"target-side checks: {results.count(True)} passed, {results.count(False)} failed")
    return 0 if all(results) else 1


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("checks")
    c.add_argument("--lb", required=True)
    c.add_argument("--twin-dir", required=True)
    c.add_argument("--issuance-tasks", type=int, default=3)
    c.add_argument("--verification-tasks", type=int, default=3)
    c.add_argument("--keys", help="the twin's keys file (default TWIN_DIR/keys.env)")
    c.add_argument("--idle", action="store_true")
    c.add_argument("--idle-seconds", type=int, default=65)
    e = sub.add_parser("echo")
    e.add_argument("--port", type=int, required=True)
    e.add_argument("--echo-id", default="echo-target")
    f = sub.add_parser("forwarded")
    f.add_argument("--lb", required=True)
    f.add_argument("--lb-port", type=int, required=True)
    f.add_argument("--echo-id", default="echo-target")
    args = p.parse_args()
    if args.cmd == "echo":
        return run_echo(args)
    if args.cmd == "forwarded":
        return run_forwarded(args)
    return run_checks(args)


if __name__ == "__main__":
    sys.exit(main())
