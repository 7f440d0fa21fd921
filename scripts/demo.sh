#!/usr/bin/env bash
# Brings up a working Tollgate on this machine: builds the binaries, creates and migrates the
# Postgres database, seeds a demo org with the built-in mock provider, starts the control plane
# and one edge in the background, and sends one chat completion through it.
#
#   scripts/demo.sh [up]   start (or restart) the demo
#   scripts/demo.sh stop   stop it
#
# State (master key, admin token, pid files, logs, the edge's snapshot) lives in .tollgate-demo/
# at the repository root and survives restarts. Environment:
#   DATABASE_URL        default postgres://postgres@127.0.0.1:5432/tollgate
#   TOLLGATE_GRPC_PORT  control plane gRPC port, default 8051
#   TOLLGATE_HTTP_PORT  edge HTTP port, default 8080
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
state_dir="$repo_root/.tollgate-demo"
bin_dir="$repo_root/target/debug"
grpc_port=${TOLLGATE_GRPC_PORT:-8051}
http_port=${TOLLGATE_HTTP_PORT:-8080}
database_url=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/tollgate}
control_plane_url="http://127.0.0.1:$grpc_port"
edge_url="http://127.0.0.1:$http_port"
ready_timeout_secs=60

log() { printf '==> %s\n' "$*" >&2; }
die() {
  printf 'demo: %s\n' "$*" >&2
  exit 1
}

# Last lines of both logs, for a failure the user should be able to diagnose from one screen.
show_logs() {
  local name
  for name in cp edge; do
    if [[ -s "$state_dir/$name.log" ]]; then
      printf '\n--- last lines of %s ---\n' "$state_dir/$name.log" >&2
      tail -n 20 "$state_dir/$name.log" >&2
    fi
  done
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# True when pid is alive and runs the given binary, so a recycled pid is never killed.
runs_binary() {
  local pid=$1 binary=$2
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  [[ -r /proc/$pid/cmdline ]] || return 0
  # Read first: with pipefail, `tr | grep -q` fails whenever grep stops reading early.
  local cmdline
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline")
  [[ $cmdline == *"$binary"* ]]
}

stop_process() {
  local name=$1 binary=$2 pid_file="$state_dir/$1.pid" pid
  [[ -f $pid_file ]] || return 0
  pid=$(<"$pid_file")
  if runs_binary "$pid" "$binary"; then
    log "stopping $binary (pid $pid)"
    kill "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 10))
    while runs_binary "$pid" "$binary"; do
      if ((SECONDS >= deadline)); then
        kill -9 "$pid" 2>/dev/null || true
        break
      fi
      sleep 0.2
    done
  fi
  rm -f "$pid_file"
}

stop_all() {
  stop_process edge tollgate-edge
  stop_process cp tollgate-cp
}

require_tools() {
  if ! command -v cargo >/dev/null 2>&1 && [[ -f "$HOME/.cargo/env" ]]; then
    # shellcheck source=/dev/null
    . "$HOME/.cargo/env"
  fi
  local tool
  for tool in cargo psql curl python3 od; do
    command -v "$tool" >/dev/null 2>&1 || die "'$tool' is required but not installed"
  done
}

# Writes 32 random bytes as 64 hex characters to the file, once; later runs reuse it.
ensure_secret() {
  local file=$1
  if [[ ! -s $file ]]; then
    (
      umask 077
      head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$file"
    )
  fi
  [[ $(<"$file") =~ ^[0-9a-f]{64}$ ]] || die "$file is not 64 hex characters; delete it to regenerate"
}

ensure_database() {
  local db_name=${database_url##*/} query=""
  if [[ $db_name == *\?* ]]; then
    query="?${db_name#*\?}"
    db_name=${db_name%%\?*}
  fi
  [[ $db_name =~ ^[A-Za-z0-9_]+$ ]] || die "DATABASE_URL must end in a plain database name, got '$db_name'"
  local admin_url="${database_url%/*}/postgres$query"
  local exists
  exists=$(psql "$admin_url" -tAc "SELECT 1 FROM pg_database WHERE datname = '$db_name'") ||
    die "cannot reach Postgres at ${database_url%/*} (is it running? e.g. pg_ctlcluster <version> main start)"
  if [[ $exists != 1 ]]; then
    log "creating database $db_name"
    psql "$admin_url" -v ON_ERROR_STOP=1 -qc "CREATE DATABASE \"$db_name\"" >/dev/null
  fi
}

seed_field() {
  python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' \
    "$state_dir/seed.json" "$1"
}

# Polls until the check passes, failing early when the process behind it has exited.
wait_for() {
  local what=$1 pid_name=$2 binary=$3
  shift 3
  local deadline=$((SECONDS + ready_timeout_secs))
  until "$@"; do
    # Liveness only: right after the spawn the child may not have exec'd the binary yet (its
    # cmdline is still the shell's), so checking the name here would race.
    local pid
    pid=$(<"$state_dir/$pid_name.pid")
    kill -0 "$pid" 2>/dev/null || {
      show_logs
      die "$binary exited before $what"
    }
    if ((SECONDS >= deadline)); then
      show_logs
      die "timed out after ${ready_timeout_secs}s waiting for $what"
    fi
    sleep 0.5
  done
}

edge_ready() { curl -sf -o /dev/null "$edge_url/readyz"; }

up() {
  require_tools
  cd "$repo_root"

  log "building (cargo build --workspace --bins)"
  cargo build --workspace --bins

  mkdir -p "$state_dir"
  chmod 700 "$state_dir"
  ensure_secret "$state_dir/master.key"
  ensure_secret "$state_dir/admin.token"
  local master_key admin_token
  master_key=$(<"$state_dir/master.key")
  admin_token=$(<"$state_dir/admin.token")

  ensure_database
  # Secrets go to the control plane's environment only, never to the edge's.
  local cp_env=(env "TOLLGATE_MASTER_KEY=$master_key" "TOLLGATE_ADMIN_TOKEN=$admin_token")
  log "migrating"
  "${cp_env[@]}" "$bin_dir/tollgate-cp" migrate --database-url "$database_url"
  log "seeding the demo org, mock provider and models"
  (
    umask 077
    "${cp_env[@]}" "$bin_dir/tollgate-cp" seed-demo --database-url "$database_url" --output json \
      >"$state_dir/seed.json"
  )
  local key join_token
  key=$(seed_field key) || die "seed-demo printed no key; see $state_dir/seed.json"
  join_token=$(seed_field join_token) || die "seed-demo printed no join_token; see $state_dir/seed.json"

  stop_all
  local port
  for port in "$grpc_port" "$http_port"; do
    if port_open "$port"; then
      die "port $port is already in use by another process (set TOLLGATE_GRPC_PORT / TOLLGATE_HTTP_PORT)"
    fi
  done

  log "starting the control plane on $control_plane_url"
  nohup "${cp_env[@]}" "$bin_dir/tollgate-cp" serve --database-url "$database_url" --listen "127.0.0.1:$grpc_port" \
    >"$state_dir/cp.log" 2>&1 </dev/null &
  echo $! >"$state_dir/cp.pid"
  wait_for "the control plane to listen" cp tollgate-cp port_open "$grpc_port"

  log "starting an edge on $edge_url"
  mkdir -p "$state_dir/edge-state"
  # The join token goes in the environment, not on the command line, where `ps` shows it.
  TOLLGATE_JOIN_TOKEN="$join_token" nohup "$bin_dir/tollgate-edge" serve --control-plane "$control_plane_url" \
    --listen "127.0.0.1:$http_port" --state-dir "$state_dir/edge-state" \
    --edge-id demo-edge --region local \
    >"$state_dir/edge.log" 2>&1 </dev/null &
  echo $! >"$state_dir/edge.pid"
  wait_for "the edge to load its config ($edge_url/readyz)" edge tollgate-edge edge_ready

  local chat_body='{"model":"mock-small","messages":[{"role":"user","content":"Hello, Tollgate!"}]}'
  local stream_body='{"model":"mock-small","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Hello, Tollgate!"}]}'
  local embed_body='{"model":"mock-embed","input":["first text","second text"],"dimensions":8}'
  local messages_body='{"model":"mock-small","max_tokens":64,"messages":[{"role":"user","content":"Hello, Tollgate!"}]}'
  cat <<EOF

Tollgate demo is running.
  control plane (gRPC)  $control_plane_url   log: .tollgate-demo/cp.log
  edge (HTTP)           $edge_url    log: .tollgate-demo/edge.log

Virtual key (models mock-small / mock-large / mock-embed, built-in mock provider, no real API key needed):
  $key

Admin CLI:
  export TOLLGATE_ADMIN_TOKEN=$admin_token
  export TOLLGATE_CONTROL_PLANE=$control_plane_url
  target/debug/tollgatectl models list
  target/debug/tollgatectl edges list

Chat completion:
  curl -s $edge_url/v1/chat/completions \\
    -H 'Authorization: Bearer $key' -H 'Content-Type: application/json' \\
    -d '$chat_body'

Streaming:
  curl -sN $edge_url/v1/chat/completions \\
    -H 'Authorization: Bearer $key' -H 'Content-Type: application/json' \\
    -d '$stream_body'

Embeddings:
  curl -s $edge_url/v1/embeddings \\
    -H 'Authorization: Bearer $key' -H 'Content-Type: application/json' \\
    -d '$embed_body'

Anthropic Messages API:
  curl -s $edge_url/v1/messages \\
    -H 'x-api-key: $key' -H 'anthropic-version: 2023-06-01' -H 'Content-Type: application/json' \\
    -d '$messages_body'

Stop:  scripts/demo.sh stop

EOF

  demo_request "one chat completion" /v1/chat/completions "Authorization: Bearer $key" "$chat_body"
  demo_request "one embeddings request" /v1/embeddings "Authorization: Bearer $key" "$embed_body"
  demo_request "one Anthropic Messages request" /v1/messages "x-api-key: $key" "$messages_body"
}

# Sends one request through the edge, prints the answer, and fails the demo unless it is a 200.
demo_request() {
  local what=$1 path=$2 auth_header=$3 request_body=$4
  log "sending $what through the edge"
  local response status body
  response=$(curl -sS -w '\n%{http_code}' "$edge_url$path" \
    -H "$auth_header" -H 'Content-Type: application/json' -H 'anthropic-version: 2023-06-01' \
    -d "$request_body") || {
    show_logs
    die "$what failed"
  }
  status=${response##*$'\n'}
  body=${response%$'\n'*}
  printf '%s\n' "$body" | python3 -m json.tool 2>/dev/null || printf '%s\n' "$body"
  if [[ $status != 200 ]]; then
    show_logs
    die "$what returned HTTP $status"
  fi
}

case "${1:-up}" in
  up) up ;;
  stop)
    stop_all
    log "demo stopped"
    ;;
  -h | --help | help) sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' ;;
  *) die "unknown command '$1' (expected: up, stop)" ;;
esac
