#!/usr/bin/env bash
# Throwaway PostgreSQL 15 cluster for tests.
#
#   scripts/pg-cluster.sh start [DIR] [PORT]   initdb + start; prints ONE line on stdout:
#                                              postgres://postgres@127.0.0.1:PORT/postgres
#   scripts/pg-cluster.sh stop DIR             immediate shutdown, then removes DIR
#
# DIR defaults to a fresh `mktemp -d /tmp/openhive-pg.XXXXXX`; PORT defaults to the first
# free port from 54329 upwards. The cluster trusts every local connection (no password),
# listens on 127.0.0.1 only, keeps its Unix socket in DIR and runs with fsync=off: never
# use it for anything but tests. Everything except the URL goes to stderr.
#
# PostgreSQL refuses to run as root, so when run as root the server runs as the `postgres`
# user (via runuser). If that user or the PostgreSQL 15 binaries are missing, the script
# installs postgresql-15 with apt-get (root only).
set -euo pipefail

PG_MAJOR=15
PG_LIBDIR="/usr/lib/postgresql/$PG_MAJOR/bin"
FIRST_PORT=54329
PORT_TRIES=50
MARKER=.openhive-pg-cluster

log() { printf 'pg-cluster: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}
usage() {
  cat >&2 <<USAGE
usage: $0 start [DIR] [PORT]
       $0 stop DIR
USAGE
  exit 2
}

# Runs a command as the server's user: `postgres` when we are root, ourselves otherwise.
as_pg() {
  if ((EUID == 0)); then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# Sets INITDB and PG_CTL to PostgreSQL 15 binaries (PATH first, then $PG_LIBDIR).
# Returns 1 if they are not found.
find_bins() {
  local name var path
  for name in initdb pg_ctl; do
    var=$(printf '%s' "$name" | tr '[:lower:]' '[:upper:]')
    path=$(command -v "$name" 2>/dev/null || true)
    if [[ -n $path ]] && ! "$path" --version 2>/dev/null | grep -q " $PG_MAJOR\."; then
      path= # on PATH, but another major version
    fi
    if [[ -z $path && -x $PG_LIBDIR/$name ]]; then
      path=$PG_LIBDIR/$name
    fi
    [[ -n $path ]] || return 1
    printf -v "$var" '%s' "$path"
  done
}

have_pg() {
  find_bins || return 1
  if ((EUID == 0)); then
    id -u postgres >/dev/null 2>&1 || return 1
  fi
}

install_pg() {
  ((EUID == 0)) || die "PostgreSQL $PG_MAJOR is not installed and we are not root; install postgresql-$PG_MAJOR"
  command -v apt-get >/dev/null || die "PostgreSQL $PG_MAJOR is not installed and apt-get is not available"
  log "installing postgresql-$PG_MAJOR with apt-get"
  # Do not let the package create (and start) its own main cluster.
  if [[ ! -e /etc/postgresql-common/createcluster.conf ]]; then
    mkdir -p /etc/postgresql-common
    echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.conf
  fi
  export DEBIAN_FRONTEND=noninteractive UCF_FORCE_CONFFOLD=1
  apt-get update >&2
  apt-get install -y -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    "postgresql-$PG_MAJOR" >&2
}

ensure_pg() {
  have_pg && return 0
  install_pg
  have_pg || die "PostgreSQL $PG_MAJOR still not usable after installing postgresql-$PG_MAJOR"
}

# True if nothing listens on TCP port $1 (any address).
port_free() {
  local port=$1
  if command -v ss >/dev/null 2>&1; then
    [[ -z $(ss -Hltn "sport = :$port" 2>/dev/null) ]]
  else
    ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
  fi
}

# Prints the first free port >= $1.
free_port_from() {
  local port=$1
  while ((port < 65536)); do
    if port_free "$port"; then
      echo "$port"
      return 0
    fi
    port=$((port + 1))
  done
  return 1
}

# True if process $1 exists and is not a zombie.
alive() {
  local state
  kill -0 "$1" 2>/dev/null || return 1
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null || true)
  [[ $state != Z ]]
}

# Waits up to 5 s for process $1 to go away; false if it is still there.
wait_gone() {
  local i
  for ((i = 0; i < 50; i++)); do
    alive "$1" || return 0
    sleep 0.1
  done
  ! alive "$1"
}

# pid of the postmaster running on data directory $1, if any.
running_pid() {
  local pidfile=$1/postmaster.pid pid
  [[ -f $pidfile ]] || return 1
  pid=$(head -n 1 "$pidfile" 2>/dev/null || true)
  [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" || return 1
  echo "$pid"
}

# EXIT trap of `start`: on failure, stop what was started and remove what was created.
START_OK=0 START_DIR= START_CREATED_DIR=0
cleanup_start() {
  ((START_OK)) && return 0
  [[ -n $START_DIR && -d $START_DIR ]] || return 0
  local dir=$START_DIR
  if [[ -f $dir/log ]]; then
    log "server log ($dir/log), last lines:"
    tail -n 20 "$dir/log" >&2 || true
  fi
  if running_pid "$dir/data" >/dev/null; then
    as_pg "$PG_CTL" -D "$dir/data" -m immediate stop >&2 || true
  fi
  cd /
  if ((START_CREATED_DIR)); then
    rm -rf -- "$dir"
  else
    rm -rf -- "${dir:?}/data" "$dir/log" "$dir/$MARKER"
  fi
}

pg_start() {
  local dir=${1:-} port=${2:-} created_dir=0 auto_port=0 attempt
  [[ -z $port || $port =~ ^[0-9]+$ ]] || die "PORT must be a number: $port"

  ensure_pg

  if [[ -z $dir ]]; then
    dir=$(mktemp -d /tmp/openhive-pg.XXXXXX)
    created_dir=1
  else
    dir=$(realpath -m -- "$dir")
    if [[ -e $dir/data ]]; then
      die "$dir/data already exists; stop that cluster or choose another DIR"
    fi
    if [[ ! -d $dir ]]; then
      mkdir -p -- "$dir"
      created_dir=1
    fi
  fi
  # On any failure from here on: stop what we started and remove what we created.
  START_DIR=$dir START_CREATED_DIR=$created_dir
  trap cleanup_start EXIT

  # The Unix socket path (DIR/.s.PGSQL.PORT) must fit in sun_path (107 bytes).
  ((${#dir} + 18 <= 107)) || die "DIR path too long for a Unix socket: $dir"

  touch "$dir/$MARKER"
  chmod 700 "$dir"
  if ((EUID == 0)); then
    chown -R postgres:postgres "$dir"
    runuser -u postgres -- test -w "$dir" ||
      die "user postgres cannot write to $dir (check the permissions of its parent directories)"
  fi
  # runuser keeps the current directory, which postgres may not be allowed to enter.
  cd "$dir"

  log "initdb in $dir/data"
  as_pg "$INITDB" -D "$dir/data" -A trust -U postgres -E UTF8 --locale=C.UTF-8 --lc-collate=C \
    >&2 || as_pg "$INITDB" -D "$dir/data" -A trust -U postgres -E UTF8 --locale=C >&2

  if [[ -z $port ]]; then
    auto_port=1
    port=$(free_port_from "$FIRST_PORT") || die "no free TCP port from $FIRST_PORT"
  fi
  for ((attempt = 1; ; attempt++)); do
    log "starting PostgreSQL $PG_MAJOR on 127.0.0.1:$port"
    if as_pg "$PG_CTL" -D "$dir/data" -l "$dir/log" -w -t 60 \
      -o "-p $port -k '$dir' -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=400 -c shared_buffers=128MB" \
      start >&2; then
      break
    fi
    # Lost a race for an automatically chosen port: try the next free one.
    if ((auto_port && attempt < PORT_TRIES)) && ! running_pid "$dir/data" >/dev/null &&
      grep -q 'could not bind\|could not create any TCP/IP sockets' "$dir/log" 2>/dev/null; then
      port=$(free_port_from $((port + 1))) || die "no free TCP port after $port"
      continue
    fi
    die "could not start PostgreSQL (log: $dir/log)"
  done

  local url="postgres://postgres@127.0.0.1:$port/postgres"
  echo "$url" >"$dir/$MARKER"
  START_OK=1
  trap - EXIT
  log "running: DIR=$dir; stop with: $0 stop $dir"
  echo "$url"
}

pg_stop() {
  local dir=${1:-}
  [[ -n $dir ]] || usage
  dir=$(realpath -m -- "$dir")
  if [[ ! -e $dir ]]; then
    log "$dir does not exist; nothing to stop"
    return 0
  fi
  [[ $dir != / && -d $dir ]] || die "not a directory: $dir"
  # Only ever remove a directory this script set up.
  [[ -e $dir/$MARKER || -f $dir/data/PG_VERSION ]] ||
    die "$dir does not look like a cluster made by $0; not touching it"

  local pid
  if pid=$(running_pid "$dir/data"); then
    if find_bins; then
      cd "$dir"
      as_pg "$PG_CTL" -D "$dir/data" -m immediate -w -t 30 stop >&2 || true
    fi
    # pg_ctl missing or failed: SIGQUIT is the postmaster's immediate shutdown.
    if ! wait_gone "$pid"; then
      log "sending SIGQUIT to postmaster $pid"
      kill -QUIT "$pid" 2>/dev/null || true
      wait_gone "$pid" || die "postmaster $pid still running; not removing $dir"
    fi
  fi
  cd /
  rm -rf -- "$dir"
  log "stopped and removed $dir"
}

cmd=${1:-}
[[ -n $cmd ]] || usage
shift
case $cmd in
  start)
    (($# <= 2)) || usage
    pg_start "$@"
    ;;
  stop)
    (($# == 1)) || usage
    pg_stop "$1"
    ;;
  *) usage ;;
esac
