#!/usr/bin/env bash
# make demo: a logout reaching a resource server, end to end.
#
# Starts `tokend serve --dev` and examples/orders following tokend's
# revocation feed (GET /events) as the confidential client "orders" (scope
# events:read), which tokend creates at start-up from a bootstrap file
# (docs/operations.md, "Bootstrap users and clients at start-up") with a
# secret made here and handed to both through their environment — never
# printed, never on a command line. Then it tells the story as curl lines
# and runs each, checking its answer: sign in, call orders, log out, and
# the same access token gets 401 at orders. Then it keeps both running
# until Ctrl-C (or, with DEMO_ONCE=1, stops at once: what the tests run),
# and stops everything it started.
#
# Settings (environment): DEMO_TOKEND_ADDR [127.0.0.1:8080],
# DEMO_ORDERS_ADDR [127.0.0.1:9090], DEMO_ONCE, TOKEND_BIN [bin/tokend],
# ORDERS_BIN [bin/orders]. It exits non-zero when a step's answer is not
# the one the story tells.
set -uo pipefail

tokend_addr=${DEMO_TOKEND_ADDR:-127.0.0.1:8080}
orders_addr=${DEMO_ORDERS_ADDR:-127.0.0.1:9090}
tokend_bin=${TOKEND_BIN:-bin/tokend}
orders_bin=${ORDERS_BIN:-bin/orders}
T=http://$tokend_addr
O=http://$orders_addr

work=$(mktemp -d "${TMPDIR:-/tmp}/tokend-demo.XXXXXX")
pids=()

# stop ends what the demo started: each server gets SIGTERM (both shut down
# gracefully) and up to 10 s, then SIGKILL; the scratch directory goes.
stop() {
	trap - EXIT INT TERM
	local pid i
	for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
	for pid in "${pids[@]}"; do
		for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done
	rm -rf "$work"
}
trap stop EXIT
trap 'echo; echo "stopping tokend and orders"; exit 130' INT
trap 'exit 143' TERM

# fail says what went wrong, with the end of the servers' logs (which stop
# deletes), and exits.
fail() {
	echo "demo: $*" >&2
	local log
	for log in "$work"/*.log; do
		[ -s "$log" ] && { echo "--- the end of $log:" >&2; tail -n 15 "$log" >&2; }
	done
	exit 1
}

# started NAME PID URL: wait up to 60 s until URL answers, or fail if the
# server exits first.
started() {
	local i
	for ((i = 0; i < 600; i++)); do
		curl -sf -o /dev/null "$3" && return 0
		kill -0 "$2" 2>/dev/null || fail "$1 exited at start-up"
		sleep 0.1
	done
	fail "$1 did not answer $3 within 60 s"
}

for b in "$tokend_bin" "$orders_bin"; do
	[ -x "$b" ] || fail "$b is not built (make demo builds it)"
done
command -v curl >/dev/null || fail "curl is needed"

# The reader client's secret: 256 random bits, URL-safe (hex).
secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
cat >"$work/bootstrap.yaml" <<'EOF'
clients:
  - id: orders
    grants: [client_credentials]
    scopes: ["events:read"]
    secret_env: DEMO_ORDERS_SECRET
EOF

# A clean environment: none of the person's tokend settings (REDIS_URL
# would make serve --dev refuse to start) reach the demo's servers.
env -i PATH="$PATH" HOME="${HOME:-/}" TMPDIR="${TMPDIR:-/tmp}" \
	HTTP_ADDR="$tokend_addr" JWT_ISSUER="$T" JWT_AUDIENCE=orders LOG_FORMAT=text \
	TOKEND_BOOTSTRAP="$work/bootstrap.yaml" DEMO_ORDERS_SECRET="$secret" \
	"$tokend_bin" serve --dev >"$work/tokend.log" 2>&1 &
pids+=($!)
started tokend $! "$T/readyz"

env -i PATH="$PATH" HOME="${HOME:-/}" TMPDIR="${TMPDIR:-/tmp}" ORDERS_EVENTS_SECRET="$secret" \
	"$orders_bin" -issuer "$T" -audience orders -addr "$orders_addr" -events-client orders >"$work/orders.log" 2>&1 &
pids+=($!)
started orders $! "$O/healthz"
curl -s "$O/healthz" | grep -q '"revocation_feed_connected":true' ||
	fail "orders is not following tokend's revocation feed: $(curl -s "$O/healthz")"

cat <<EOF

tokend  $T   serve --dev: embedded store, user "demo" (password "demo-password"),
                             public client "demo-app"; access tokens for the audience "orders"
orders  $O   examples/orders: checks tokend's tokens locally and follows
                             tokend's revocation feed as the client "orders"
logs    $work/tokend.log, $work/orders.log

The story, as lines to copy into a shell of your own (each is run here too):
EOF

# step TITLE COMMAND: print the command, run it in this shell (so the
# variables it sets are there for the next step), show what it printed
# and keep it in $out.
step() {
	printf '\n%s\n\n' "$1"
	sed 's/^/    /' <<<"$2"
	echo
	eval "$2" >"$work/out" 2>&1
	out=$(<"$work/out")
	sed 's/^/    > /' <<<"$out"
}

step "1. Sign in as demo; keep the access token (AT) and the refresh token (RT):" \
"SIGNIN=\$(curl -s $T/oauth/token -d grant_type=password -d client_id=demo-app -d username=demo -d password=demo-password); echo \"\$SIGNIN\"
AT=\$(echo \"\$SIGNIN\" | grep -o '\"access_token\":\"[^\"]*\"' | cut -d'\"' -f4)
RT=\$(echo \"\$SIGNIN\" | grep -o '\"refresh_token\":\"[^\"]*\"' | cut -d'\"' -f4)"
[ -n "${AT:-}" ] && [ -n "${RT:-}" ] || fail "step 1: the sign-in answered $out"

step "2. Call orders with the access token: it checks the token itself, without asking tokend:" \
"curl -s -w ' %{http_code}\n' $O/orders -H \"Authorization: Bearer \$AT\""
[[ $out == *'"orders":'*' 200' ]] || fail "step 2: orders answered $out"

step "3. Log out: tokend ends the session (204) and tells the revocation feed:" \
"curl -s -o /dev/null -w '%{http_code}\n' $T/logout -d client_id=demo-app -d refresh_token=\$RT"
[ "$out" = 204 ] || fail "step 3: logout answered $out"

# The feed brings the logout to orders within a second; the person's copy
# of this line runs later anyway.
call="curl -s -i $O/orders -H \"Authorization: Bearer \$AT\""
for ((i = 0; i < 100; i++)); do
	[[ $(eval "$call") == 'HTTP/1.1 401'* ]] && break
	sleep 0.1
done
step "4. The same access token at orders, still minutes from its expiry: 401, the session has ended:" "$call"
[[ $out == 'HTTP/1.1 401'* && $out == *'error="invalid_token"'* ]] || fail "step 4: orders answered $out"

cat <<EOF

orders refused a token whose signature and expiry are still good: it heard
of the logout on tokend's revocation feed, without calling tokend per request.
EOF

if [ -n "${DEMO_ONCE:-}" ]; then
	echo
	echo "DEMO_ONCE: the story ran; stopping tokend and orders."
	exit 0
fi
cat <<EOF

tokend and orders keep running: copy the lines above (sign in again for a
fresh token), or follow README.md. Ctrl-C stops both.
EOF
wait -n "${pids[@]}"
fail "a server exited (logs: $work/tokend.log, $work/orders.log)"
