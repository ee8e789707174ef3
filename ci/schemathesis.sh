#!/usr/bin/env bash
# Property-based tests of the HTTP API against its own OpenAPI spec (schemathesis).
#
# Starts target/debug/smsgate on loopback with a built-in simulated carrier and a throwaway
# store, lets schemathesis generate requests from GET /v1/openapi.json (valid and invalid ones,
# with and without the api key) and checks every answer: no 5xx, and status codes, content
# types, headers and bodies as the spec says. Exits non-zero on any failure.
#
# Needs `schemathesis` (PyPI) on PATH; installs nothing. Environment:
#   SMSGATE_BIN            the daemon to test (default: target/debug/smsgate, built if missing)
#   SCHEMATHESIS_EXAMPLES  test cases per operation and phase (default 100)
#   SCHEMATHESIS_SEED      hypothesis seed (default: fixed, so CI runs are repeatable)
#   SCHEMATHESIS_TIMEOUT   wall-clock limit in seconds for the schemathesis run (default 270)
set -euo pipefail
cd "$(dirname "$0")/.."

examples="${SCHEMATHESIS_EXAMPLES:-100}"
seed="${SCHEMATHESIS_SEED:-20261122}"
limit="${SCHEMATHESIS_TIMEOUT:-270}"

if ! command -v schemathesis >/dev/null; then
    echo "schemathesis.sh: schemathesis is not installed (pip install schemathesis)" >&2
    exit 2
fi
bin="${SMSGATE_BIN:-target/debug/smsgate}"
if [[ -z "${SMSGATE_BIN:-}" ]]; then
    cargo build --quiet --bin smsgate
fi
bin="$(realpath "$bin")"

tmp="$(mktemp -d -t smsgate-schemathesis.XXXXXX)"
daemon=""
tester=""

# Stops a child: SIGTERM, up to `$2` seconds to exit, then SIGKILL. Sets `stopped_rc`.
stop() {
    local pid="$1" grace="$2"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq "$((grace * 10))"); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    stopped_rc=0
    wait "$pid" 2>/dev/null || stopped_rc=$?
}

cleanup() {
    local rc=$?
    [[ -n "$tester" ]] && stop "$tester" 5
    [[ -n "$daemon" ]] && stop "$daemon" 10
    rm -rf "$tmp"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Free loopback ports (bound, then released) for the API, the admin listener, the carrier and
# a webhook endpoint nobody listens on (its events become dead letters to list and replay).
read -r http_port admin_port carrier_port hook_port < <(python3 - <<'EOF'
import socket
socks = [socket.socket() for _ in range(4)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
for s in socks:
    s.close()
EOF
)
rand() { python3 -c 'import secrets; print(secrets.token_urlsafe(30).replace("-", "x").replace("_", "y"))'; }
key="st-$(rand)"
other_key="other-$(rand)"
token="$(rand)"
webhook_secret="whsec_$(python3 -c 'import base64, secrets; print(base64.b64encode(secrets.token_bytes(24)).decode())')"
line="+12125551000"
other_line="+12125552000"

cat >"$tmp/smsgate.toml" <<EOF
[http]
listen = "127.0.0.1:$http_port"
request_timeout = "10s"

[admin]
listen = "127.0.0.1:$admin_port"

[store]
path = "$tmp/smsgate.db"

[[apps]]
id = "schemathesis"
api_keys = ["$key"]
webhook_url = "http://127.0.0.1:$hook_port/hooks"
webhook_secrets = ["$webhook_secret"]

[webhooks]
max_age = "1s"
initial_backoff = "100ms"
max_backoff = "200ms"
connect_timeout = "200ms"

# Owns a line the tested app may not use (403 forbidden_line).
[[apps]]
id = "other"
api_keys = ["$other_key"]

[[carriers]]
id = "sim"
host = "127.0.0.1"
port = $carrier_port
system_id = "smsgate"
password = "secret"
simulator = true
simulator_receipt_delay = "100ms"

[[lines]]
number = "$line"
app = "schemathesis"
carrier = "sim"
rate = 1000.0
burst = 1000

[[lines]]
number = "$other_line"
app = "other"
carrier = "sim"
rate = 1000.0
burst = 1000

[[triggers]]
id = "ctt"
token = "$token"
kind = "call_to_text"
line = "$line"
template = "Thanks for calling. Reply here and we will text you back."
dedupe_window = "1s"
EOF

"$bin" run --config "$tmp/smsgate.toml" >"$tmp/smsgate.log" 2>&1 &
daemon=$!

ready=""
for _ in $(seq 300); do
    if curl -fsS --max-time 2 "http://127.0.0.1:$admin_port/readyz" >/dev/null 2>&1; then
        ready=1
        break
    fi
    kill -0 "$daemon" 2>/dev/null || break
    sleep 0.1
done
if [[ -z "$ready" ]]; then
    echo "schemathesis.sh: smsgate did not become ready; its log:" >&2
    cat "$tmp/smsgate.log" >&2
    exit 1
fi

# Some data to find: messages (and so conversations), and dead letters of their webhook events.
ids=()
for to in "+19175551234" "(917) 555-1235"; do
    ids+=("$(curl -fsS --max-time 10 -X POST "http://127.0.0.1:$http_port/v1/messages" \
        -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
        -d "{\"from\": \"$line\", \"to\": \"$to\", \"body\": \"seed\"}" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')")
done
for _ in $(seq 50); do
    dead="$(curl -fsS --max-time 10 "http://127.0.0.1:$http_port/v1/webhooks/dead" -H "Authorization: Bearer $key" |
        python3 -c 'import json, sys; print(" ".join(d["id"] for d in json.load(sys.stdin)["dead"]))')"
    [[ -n "$dead" ]] && break
    sleep 0.1
done
read -r -a dead_ids <<<"$dead"
ids+=("${dead_ids[@]:0:3}")
quoted_ids="$(printf '"%s", ' "${ids[@]}")"

# Real values, drawn part of the time, so requests also get past "no such line/token" and
# reach the handlers' deeper paths; the rest of the time schemathesis draws its own.
cat >"$tmp/schemathesis.toml" <<EOF
[dictionaries.lines]
values = ["$line", "2125551000", "$other_line"]

[dictionaries.numbers]
values = ["+19175551234", "(917) 555-1235", "19175551236", "+442071838750"]

[dictionaries.ids]
values = [${quoted_ids%, }]

[dictionaries.tokens]
values = ["$token"]

[parameters]
"path.line" = { dictionary = "lines", probability = 0.6 }
"path.number" = { dictionary = "numbers", probability = 0.5 }
"path.id" = { dictionary = "ids", probability = 0.5 }
"path.token" = { dictionary = "tokens", probability = 0.6 }
"query.CALLER_ID_NUMBER" = { dictionary = "numbers", probability = 0.5 }
"body.from" = { dictionary = "lines", probability = 0.6 }
"body.to" = { dictionary = "numbers", probability = 0.5 }

# Every check runs (the default; "--checks all" on the command line would also override the
# per-operation settings below).

# A request the schema allows can still be refused for what JSON Schema cannot say: a
# number that is not possible (NANP rules), a line that is not configured, a text over 10
# parts, a trigger called with the caller in neither the query nor the body.
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "401", "403", "404", "409", "422"]

# The caller may be in the query or the body: a body that is not what the schema says is
# rightly ignored when the query has the caller (the query wins), and a request with the
# caller in neither is rightly refused (400) although each part alone is valid.
[[operations]]
include-operation-id = "fire_trigger"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "404", "409", "422"]
checks.negative_data_rejection.enabled = false
EOF

# One worker: CPython 3.11.7's `ast` is not thread-safe (gh-106905), and hypothesis parses
# source to describe strategies, which fails now and then with two.
(
    cd "$tmp"
    exec timeout --kill-after=10 "$limit" schemathesis --no-color \
        --config-file "$tmp/schemathesis.toml" \
        run "http://127.0.0.1:$http_port/v1/openapi.json" \
        --header "Authorization: Bearer $key" \
        --max-examples "$examples" \
        --seed "$seed" \
        --workers 1 \
        --request-timeout 15 \
        --generation-database none \
        --suppress-health-check all
) &
tester=$!
st=0
wait "$tester" || st=$?
tester=""
if [[ $st -eq 124 || $st -eq 137 ]]; then
    echo "schemathesis.sh: schemathesis did not finish within ${limit}s" >&2
fi

alive=1
kill -0 "$daemon" 2>/dev/null || alive=""
stop "$daemon" 40
daemon=""
if [[ -z "$alive" || $stopped_rc -ne 0 ]]; then
    echo "schemathesis.sh: smsgate died or did not stop cleanly (exit $stopped_rc); its log:" >&2
    tail -n 50 "$tmp/smsgate.log" >&2
    exit 1
fi
if [[ $st -ne 0 ]]; then
    echo "schemathesis.sh: failures (exit $st); smsgate's errors:" >&2
    grep -E 'ERROR|WARN|panick' "$tmp/smsgate.log" | tail -n 20 >&2 || true
    exit "$st"
fi
echo "schemathesis.sh: ok"
