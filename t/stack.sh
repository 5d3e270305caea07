#!/usr/bin/env bash
#
# t/stack.sh: the real servers behind ngx_chat, for `make run` and for the
# integration tests: PostgreSQL 15, Redis, a single-node KRaft Kafka, the
# chat_worker daemons and nginx with the chat module.
#
# Everything lives in one state directory DIR:
#   DIR/<name>/        a component's data (pg, redis, kafka, nginx)
#   DIR/log/<name>.log its output (pg, redis, kafka, workerN, nginx)
#   DIR/run/<name>.pid its pid
#   DIR/stack.env      ports, secret and paths, KEY=VALUE, sourceable
#
# A second `start` on the same DIR keeps the data (and the JWT secret) and
# applies only the new sql/ migrations.  See `t/stack.sh help`.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PROG=${0##*/}

usage() {
    cat <<EOF
usage: $PROG ACTION DIR [ARG]

  start DIR          start PostgreSQL, Redis, Kafka, the workers and nginx
  stop DIR           stop them all and wait until they are gone
  run DIR            start, print the URLs, wait; Ctrl-C stops everything
  status DIR         which components run
  destroy DIR        stop, then delete DIR (and PostgreSQL's data outside it)

  fault injection, on a started DIR (reads DIR/stack.env):
  worker-kill DIR    SIGKILL every chat_worker
  worker-stop DIR    SIGTERM every chat_worker and wait
  worker-start DIR [N]  start the missing workers 1..N (default CHAT_WORKERS)
  redis-stop DIR | redis-start DIR | redis-restart DIR
  kafka-stop DIR     SIGTERM the broker and wait
  kafka-start DIR    start the broker and wait until it answers
  pg-stop DIR | pg-start DIR
  nginx-stop DIR | nginx-start DIR | nginx-reload DIR

start reads (defaults in brackets): CHAT_PORT [8080], CHAT_TLS_PORT [8443],
REDIS_PORT [6379], PG_PORT [5432], KAFKA_PORT [9092], KAFKA_CTRL_PORT [9093],
CHAT_JWT_SECRET [generated once into DIR/jwt_secret], CHAT_WORKERS [2],
CHAT_SERVER_ID [s1], CHAT_BUILD_DIR [\$ROOT/build], CHAT_CACHE
[~/.cache/ngx_chat], NGINX_BIN, CHAT_WORKER_BIN, CHATCTL_BIN, KAFKA_LIB,
STACK_SKIP (components not to start, e.g. "nginx worker").
EOF
}

# ------------------------------------------------------------------ helpers

say() { printf '%s: %s\n' "$PROG" "$*"; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }

now_ms() { local t; t=$(date +%s%N); echo $(( t / 1000000 )); }

T0=$(now_ms)
elapsed() { local t; t=$(now_ms); printf '%d.%03ds' $(( (t - T0) / 1000 )) $(( (t - T0) % 1000 )); }

# alive PID: the process exists and is not a zombie
alive() {
    local pid=$1 state
    [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
    state=$(sed -E 's/^.*\) (.).*$/\1/' "/proc/$pid/stat" 2>/dev/null) || return 1
    [ -n "$state" ] && [ "$state" != Z ]
}

# pid_of NAME: the pid in DIR/run/NAME.pid if that process still runs and
# its command line contains the component's marker (guards against reuse)
pid_of() {
    local f="$RUN/$1.pid" pid
    [ -s "$f" ] || return 1
    pid=$(head -n 1 "$f")
    alive "$pid" || return 1
    if [ -n "${2:-}" ]; then
        tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$2" \
            || return 1
    fi
    echo "$pid"
}

children_of() {
    local parent=$1 f stat rest
    for f in /proc/[0-9]*/stat; do
        stat=$(cat "$f" 2>/dev/null) || continue
        rest=${stat##*) }          # "S PPID ..."
        rest=${rest#* }
        [ "${rest%% *}" = "$parent" ] && { f=${f#/proc/}; echo "${f%/stat}"; }
    done
    return 0
}

# wait_gone TIMEOUT PID...: 0 when all are gone in time
wait_gone() {
    local timeout=$1 deadline p left; shift
    deadline=$(( $(now_ms) + timeout * 1000 ))
    while :; do
        left=0
        for p in "$@"; do alive "$p" && left=1; done
        [ $left = 0 ] && return 0
        [ "$(now_ms)" -ge $deadline ] && return 1
        sleep 0.1
    done
}

# stop_pids NAME SIG TIMEOUT PID...: send SIG, wait, then SIGKILL
stop_pids() {
    local name=$1 sig=$2 timeout=$3; shift 3
    [ $# -gt 0 ] || return 0
    kill "-$sig" "$@" 2>/dev/null || true
    if ! wait_gone "$timeout" "$@"; then
        say "$name did not exit ${timeout}s after SIG$sig: SIGKILL"
        kill -KILL "$@" 2>/dev/null || true
        wait_gone 10 "$@" || say "$name still there after SIGKILL"
    fi
}

log_tail() {
    local f
    for f in "$@"; do
        [ -s "$f" ] || continue
        printf -- '----- last lines of %s -----\n' "$f" >&2
        tail -n 40 "$f" >&2
    done
}

# wait_ready NAME PID TIMEOUT "LOGS" CMD...: poll CMD until it succeeds
wait_ready() {
    local name=$1 pid=$2 timeout=$3 logs=$4 deadline; shift 4
    deadline=$(( $(now_ms) + timeout * 1000 ))
    until "$@" >/dev/null 2>&1; do
        if [ -n "$pid" ] && ! alive "$pid"; then
            # shellcheck disable=SC2086
            log_tail $logs
            die "$name exited during startup (logs: $logs)"
        fi
        if [ "$(now_ms)" -ge $deadline ]; then
            # shellcheck disable=SC2086
            log_tail $logs
            die "$name not ready after ${timeout}s (logs: $logs)"
        fi
        sleep 0.1
    done
}

# port_busy PORT: some socket listens on PORT (any address, IPv4 or IPv6);
# read from /proc so that probing makes no connection
port_busy() {
    local hex
    hex=$(printf '%04X' "$1")
    grep -qE "^ *[0-9]+: [0-9A-F]+:$hex [0-9A-F]+:[0-9A-F]+ 0A " \
        /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

need_free_port() {
    local name=$1 port=$2
    if port_busy "$port"; then
        die "$name: port $port on 127.0.0.1 is already in use; stop what uses it or set ${3:-a different port}"
    fi
}

skipped() { case " $STACK_SKIP " in *" $1 "*) return 0 ;; esac; return 1; }

# start_bg NAME LOG CMD...: CMD in its own session (a terminal's Ctrl-C
# reaches only this script, which then stops everything in order), stdin
# from /dev/null, output to LOG; pid into DIR/run/NAME.pid
start_bg() {
    local name=$1 logf=$2; shift 2
    setsid "$@" >>"$logf" 2>&1 </dev/null &
    echo $! > "$RUN/$name.pid"
    BG_PID=$!
}

# env value printed so that `source` and a KEY=VALUE reader both work
env_line() {
    if [[ $2 =~ ^[A-Za-z0-9_./:@,+=%-]*$ ]]; then
        printf '%s=%s\n' "$1" "$2"
    else
        printf "%s='%s'\n" "$1" "${2//\'/\'\\\'\'}"
    fi
}

# -------------------------------------------------------------- configuration

setup_dir() {
    DIR=$1
    if [ "$2" = create ]; then
        mkdir -p "$DIR"
    else
        [ -d "$DIR" ] || die "$DIR: no such directory"
    fi
    DIR=$(cd "$DIR" && pwd -P)
    RUN=$DIR/run
    LOG=$DIR/log
    [ "$2" = create ] && mkdir -p "$RUN" "$LOG"
    return 0
}

# the configuration of a new start: environment, then defaults
config_from_env() {
    CHAT_PORT=${CHAT_PORT:-8080}
    CHAT_TLS_PORT=${CHAT_TLS_PORT:-8443}
    REDIS_PORT=${REDIS_PORT:-6379}
    PG_PORT=${PG_PORT:-5432}
    KAFKA_PORT=${KAFKA_PORT:-9092}
    KAFKA_CTRL_PORT=${KAFKA_CTRL_PORT:-9093}
    CHAT_WORKERS=${CHAT_WORKERS:-2}
    CHAT_SERVER_ID=${CHAT_SERVER_ID:-s1}
    CHAT_TOPIC=${CHAT_TOPIC:-chat.requests}
    CHAT_PARTITIONS=${CHAT_PARTITIONS:-4}
    STACK_SKIP=${STACK_SKIP:-}
    CHAT_BUILD_DIR=${CHAT_BUILD_DIR:-$ROOT/build}
    CHAT_CACHE=${CHAT_CACHE:-${HOME:-/root}/.cache/ngx_chat}
    KAFKA_LIB=${KAFKA_LIB:-$CHAT_CACHE/kafka-lib}
    NGINX_BIN=${NGINX_BIN:-$CHAT_BUILD_DIR/nginx/sbin/nginx}
    CHAT_WORKER_BIN=${CHAT_WORKER_BIN:-$CHAT_BUILD_DIR/bin/chat_worker}
    CHATCTL_BIN=${CHATCTL_BIN:-$CHAT_BUILD_DIR/bin/chatctl}
    PG_BIN=${PG_BIN:-}
    if [ -z "$PG_BIN" ]; then
        if [ -x /usr/lib/postgresql/15/bin/postgres ]; then
            PG_BIN=/usr/lib/postgresql/15/bin
        else
            PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
        fi
    fi

    local v
    for v in CHAT_PORT CHAT_TLS_PORT REDIS_PORT PG_PORT KAFKA_PORT \
             KAFKA_CTRL_PORT CHAT_WORKERS CHAT_PARTITIONS; do
        [[ ${!v} =~ ^[0-9]+$ ]] || die "$v=${!v}: not a number"
    done
    [[ $CHAT_SERVER_ID =~ ^[A-Za-z0-9_.-]+$ ]] \
        || die "CHAT_SERVER_ID=$CHAT_SERVER_ID: use [A-Za-z0-9_.-]"

    if [ -n "${CHAT_JWT_SECRET:-}" ]; then
        :
    elif [ -s "$DIR/jwt_secret" ]; then
        CHAT_JWT_SECRET=$(head -n 1 "$DIR/jwt_secret")
    else
        CHAT_JWT_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
    fi
    [[ $CHAT_JWT_SECRET =~ ^[A-Za-z0-9._~+/=-]+$ ]] \
        || die "CHAT_JWT_SECRET: use only [A-Za-z0-9._~+/=-] (it goes into nginx.conf)"
    ( umask 077; printf '%s\n' "$CHAT_JWT_SECRET" > "$DIR/jwt_secret" )
}

# the configuration of a started DIR
config_from_file() {
    [ -s "$DIR/stack.env" ] || die "$DIR/stack.env missing: run '$PROG start $DIR' first"
    # shellcheck disable=SC1091
    source "$DIR/stack.env"
}

write_env() {
    local tmp=$DIR/stack.env.tmp
    {
        echo "# written by t/stack.sh start; sourceable"
        env_line CHAT_DIR "$DIR"
        env_line CHAT_ROOT "$ROOT"
        env_line CHAT_BUILD_DIR "$CHAT_BUILD_DIR"
        env_line CHAT_CACHE "$CHAT_CACHE"
        env_line CHAT_PORT "$CHAT_PORT"
        env_line CHAT_TLS_PORT "$CHAT_TLS_PORT"
        env_line CHAT_URL "ws://127.0.0.1:$CHAT_PORT/chat"
        env_line CHAT_WSS_URL "wss://127.0.0.1:$CHAT_TLS_PORT/chat"
        env_line CHAT_SERVER_ID "$CHAT_SERVER_ID"
        env_line CHAT_JWT_SECRET "$CHAT_JWT_SECRET"
        env_line CHAT_JWT_SECRET_FILE "$DIR/jwt_secret"
        env_line CHAT_WORKERS "$CHAT_WORKERS"
        env_line CHAT_TOPIC "$CHAT_TOPIC"
        env_line CHAT_PARTITIONS "$CHAT_PARTITIONS"
        env_line REDIS_PORT "$REDIS_PORT"
        env_line PG_PORT "$PG_PORT"
        env_line PG_BIN "$PG_BIN"
        env_line PG_URL "postgresql://chat@127.0.0.1:$PG_PORT/chat"
        env_line PG_CONNINFO "host=127.0.0.1 port=$PG_PORT dbname=chat user=chat"
        env_line KAFKA_PORT "$KAFKA_PORT"
        env_line KAFKA_CTRL_PORT "$KAFKA_CTRL_PORT"
        env_line KAFKA_BROKERS "127.0.0.1:$KAFKA_PORT"
        env_line KAFKA_LIB "$KAFKA_LIB"
        env_line NGINX_BIN "$NGINX_BIN"
        env_line NGINX_PREFIX "$DIR/nginx"
        env_line NGINX_CONF "$DIR/nginx/nginx.conf"
        env_line NGINX_ERROR_LOG "$DIR/nginx/logs/error.log"
        env_line CHAT_WORKER_BIN "$CHAT_WORKER_BIN"
        env_line CHATCTL_BIN "$CHATCTL_BIN"
        env_line CHAT_LOG_DIR "$LOG"
        env_line CHAT_RUN_DIR "$RUN"
        env_line STACK_SKIP "$STACK_SKIP"
    } > "$tmp"
    mv "$tmp" "$DIR/stack.env"
}

# --------------------------------------------------------------- PostgreSQL
#
# Runs as the OS user postgres (we are root), so its directory must be
# reachable by that user: DIR/pg, or, when a parent of DIR is closed to
# others (pytest's /tmp/pytest-of-root is 0700) or the socket path would be
# too long, a directory under /tmp that DIR/pg links to.

PG_FALLBACK_BASE=/tmp/ngx_chat-pg

pg_paths() {
    PGROOT=$DIR/pg
    PGDATA=$PGROOT/data
    PGSOCK=$PGROOT/sock
}

pg_prepare() {
    pg_paths
    id postgres >/dev/null 2>&1 || die "no OS user 'postgres': is the postgresql package installed? (make deps)"
    [ -x "$PG_BIN/postgres" ] || die "no PostgreSQL server in '$PG_BIN' (make deps)"

    if [ -L "$PGROOT" ]; then
        local target
        target=$(readlink "$PGROOT")
        if [ ! -d "$target" ]; then
            say "pg: $target (the data behind $PGROOT) is gone: starting afresh"
            install -d -m 0711 "$PG_FALLBACK_BASE"
            install -d -m 0700 -o postgres -g postgres "$target"
        fi
    elif [ ! -d "$PGROOT" ]; then
        chmod o+x "$DIR" 2>/dev/null || true
        install -d -m 0700 -o postgres -g postgres "$PGROOT"
        local sock_path="$PGROOT/sock/.s.PGSQL.$PG_PORT"
        if ! runuser -u postgres -- test -w "$PGROOT" 2>/dev/null \
           || [ ${#sock_path} -gt 100 ]; then
            local target
            target=$PG_FALLBACK_BASE/$(printf '%s' "$DIR" | sha256sum | cut -c1-16)
            say "pg: $DIR is not reachable by the postgres user (or too deep): data in $target"
            rmdir "$PGROOT"
            install -d -m 0711 "$PG_FALLBACK_BASE"
            rm -rf "$target"
            install -d -m 0700 -o postgres -g postgres "$target"
            ln -s "$target" "$PGROOT"
        fi
    fi
    # from here on use the real path: postgres cannot always follow DIR
    PGROOT=$(readlink -f "$PGROOT")
    PGDATA=$PGROOT/data
    PGSOCK=$PGROOT/sock
    install -d -m 0700 -o postgres -g postgres "$PGSOCK"
}

as_postgres() { (cd / && runuser -u postgres -- "$@"); }

pg_running() {
    pg_paths
    [ -d "$PGROOT" ] || return 1
    PGROOT=$(readlink -f "$PGROOT"); PGDATA=$PGROOT/data
    [ -s "$PGDATA/postmaster.pid" ] || return 1
    alive "$(head -n 1 "$PGDATA/postmaster.pid")"
}

psql_as() {
    local user=$1 db=$2; shift 2
    PGOPTIONS="-c client_min_messages=warning" \
        "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -U "$user" -d "$db" \
        -v ON_ERROR_STOP=1 "$@"
}

pg_start() {
    local t0; t0=$(now_ms)
    if pg_running; then
        say "pg: already running (pid $(head -n 1 "$PGDATA/postmaster.pid"))"
    else
        pg_prepare
        need_free_port PostgreSQL "$PG_PORT" PG_PORT
        if [ ! -s "$PGDATA/PG_VERSION" ]; then
            say "pg: initdb $PGDATA"
            as_postgres "$PG_BIN/initdb" -D "$PGDATA" -U postgres \
                --auth=trust --encoding=UTF8 --locale=C >>"$LOG/pg.log" 2>&1 \
                || { log_tail "$LOG/pg.log"; die "pg: initdb failed"; }
            echo "include_if_exists = 'ngx_chat.conf'" >> "$PGDATA/postgresql.conf"
        fi
        # rewritten on every start: the ports may change between starts
        cat > "$PGDATA/ngx_chat.conf" <<EOF
# written by t/stack.sh on every start
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PGSOCK'
max_connections = 200
# durability is the product: the defaults, spelled out
fsync = on
synchronous_commit = on
full_page_writes = on
# the write load is steady inserts: room for the hot indexes, and WAL
# enough that checkpoints come on time, not every few seconds (each is a
# burst of full-page writes); neither trades durability
shared_buffers = 1GB
max_wal_size = 8GB
checkpoint_timeout = 15min
# statistics soon after a fresh start: until a table's first ANALYZE, the
# worker's prepared statements keep plans made for an empty table (a hash
# join over a sequential scan of messages on every batch)
autovacuum_naptime = 10s
log_line_prefix = '%m [%p] %q%u@%d '
log_min_messages = warning
EOF
        chown postgres:postgres "$PGDATA/ngx_chat.conf"
        # pg_ctl without -l: the postmaster writes to the log file that
        # root opened here, wherever the data directory is.
        as_postgres "$PG_BIN/pg_ctl" -D "$PGDATA" -w -t 60 -s start \
            >>"$LOG/pg.log" 2>&1 \
            || { log_tail "$LOG/pg.log"; die "pg: pg_ctl start failed"; }
    fi
    head -n 1 "$PGDATA/postmaster.pid" > "$RUN/pg.pid"
    wait_ready PostgreSQL "" 30 "$LOG/pg.log" \
        "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres

    # role and database chat, then the migrations
    if [ "$(psql_as postgres postgres -tAc "SELECT 1 FROM pg_roles WHERE rolname = 'chat'")" != 1 ]; then
        psql_as postgres postgres -c "CREATE ROLE chat LOGIN"
    fi
    if [ "$(psql_as postgres postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'chat'")" != 1 ]; then
        psql_as postgres postgres -c "CREATE DATABASE chat OWNER chat ENCODING 'UTF8' TEMPLATE template0"
    fi
    pg_migrate
    say "pg: ready on 127.0.0.1:$PG_PORT ($(( $(now_ms) - t0 )) ms)"
}

# sql/NNN_*.sql in order, each in one transaction with its row in
# schema_migrations (version = NNN).
pg_migrate() {
    local f base version n=0
    psql_as chat chat -c "CREATE TABLE IF NOT EXISTS schema_migrations (
        version text PRIMARY KEY,
        applied_at timestamptz NOT NULL DEFAULT now())"
    shopt -s nullglob
    local files=("$ROOT"/sql/[0-9]*_*.sql)
    shopt -u nullglob
    [ ${#files[@]} -gt 0 ] || { say "pg: no sql/NNN_*.sql migrations yet"; return 0; }
    while IFS= read -r f; do
        base=${f##*/}
        version=${base%%_*}
        [[ $version =~ ^[0-9]+$ ]] || continue
        if [ "$(psql_as chat chat -tAc "SELECT 1 FROM schema_migrations WHERE version = '$version'")" = 1 ]; then
            continue
        fi
        say "pg: applying sql/$base"
        psql_as chat chat -1 -f "$f" \
            -c "INSERT INTO schema_migrations (version) VALUES ('$version')" \
            || die "pg: migration sql/$base failed"
        n=$(( n + 1 ))
    done < <(printf '%s\n' "${files[@]}" | LC_ALL=C sort)
    [ $n -gt 0 ] || say "pg: schema up to date"
}

pg_stop() {
    if pg_running; then
        as_postgres "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast -w -t 60 -s stop \
            >>"$LOG/pg.log" 2>&1 || {
            local pid; pid=$(head -n 1 "$PGDATA/postmaster.pid" 2>/dev/null || true)
            say "pg: pg_ctl stop failed; SIGQUIT $pid"
            [ -n "$pid" ] && stop_pids pg QUIT 10 "$pid"
        }
        say "pg: stopped"
    fi
    rm -f "$RUN/pg.pid"
}

# -------------------------------------------------------------------- Redis

redis_start() {
    local pid t0; t0=$(now_ms)
    if pid=$(pid_of redis redis-server); then
        say "redis: already running (pid $pid)"
        return 0
    fi
    command -v redis-server >/dev/null || die "redis-server not installed (make deps)"
    need_free_port Redis "$REDIS_PORT" REDIS_PORT
    mkdir -p "$DIR/redis"
    start_bg redis "$LOG/redis.log" redis-server \
        --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$DIR/redis" \
        --save '' --appendonly no --daemonize no --logfile '' \
        --protected-mode yes --maxclients 10000
    wait_ready Redis "$BG_PID" 20 "$LOG/redis.log" redis_ping
    say "redis: ready on 127.0.0.1:$REDIS_PORT, pid $BG_PID ($(( $(now_ms) - t0 )) ms)"
}

redis_ping() { [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; }

redis_stop() {
    local pid
    if pid=$(pid_of redis redis-server); then
        stop_pids redis TERM 20 "$pid"
        say "redis: stopped"
    fi
    rm -f "$RUN/redis.pid"
}

# -------------------------------------------------------------------- Kafka

# java KAFKA_CLASS ARGS...: the JVM for the broker and its tools
kafka_java() {
    java -Xms256m -Xmx512m -XX:+UseG1GC -XX:+ExitOnOutOfMemoryError \
        -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$DIR/kafka/log4j2.properties" \
        -cp "$KAFKA_LIB/*" "$@"
}

kafka_cluster_id() {
    # a Kafka cluster id: 16 random bytes, base64url without padding
    local id
    while :; do
        id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
        [ "${id:0:1}" != - ] && break
    done
    echo "$id"
}

kafka_ready() { kcat -b "127.0.0.1:$KAFKA_PORT" -L -m 2 >/dev/null 2>&1; }

kafka_start() {
    local pid t0 kdir=$DIR/kafka; t0=$(now_ms)
    if pid=$(pid_of kafka kafka.Kafka); then
        say "kafka: already running (pid $pid)"
        return 0
    fi
    command -v java >/dev/null || die "java not installed (make deps)"
    command -v kcat >/dev/null || die "kcat not installed (make deps)"
    ls "$KAFKA_LIB"/kafka_2.13-*.jar >/dev/null 2>&1 \
        || die "no Kafka jars in $KAFKA_LIB (make kafka-jars)"
    need_free_port Kafka "$KAFKA_PORT" KAFKA_PORT
    need_free_port "Kafka controller" "$KAFKA_CTRL_PORT" KAFKA_CTRL_PORT
    mkdir -p "$kdir/data"
    [ -s "$kdir/cluster.id" ] || kafka_cluster_id > "$kdir/cluster.id"

    cat > "$kdir/server.properties" <<EOF
# written by t/stack.sh on every start: single node, KRaft, combined roles
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CTRL_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CTRL_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$kdir/data
# topics are created by chat_worker (CreateTopics), never by a producer
auto.create.topics.enable=false
num.partitions=16
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
EOF
    cat > "$kdir/log4j2.properties" <<'EOF'
# written by t/stack.sh: everything to stderr (DIR/log/kafka.log)
status = warn
name = ngx_chat_kafka
appender.stderr.type = Console
appender.stderr.name = STDERR
appender.stderr.target = SYSTEM_ERR
appender.stderr.layout.type = PatternLayout
appender.stderr.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stderr.ref = STDERR
logger.state.name = state.change.logger
logger.state.level = WARN
EOF
    if [ ! -s "$kdir/data/meta.properties" ]; then
        say "kafka: formatting $kdir/data (cluster $(cat "$kdir/cluster.id"))"
        kafka_java kafka.tools.StorageTool format -t "$(cat "$kdir/cluster.id")" \
            -c "$kdir/server.properties" --ignore-formatted >>"$LOG/kafka.log" 2>&1 \
            || { log_tail "$LOG/kafka.log"; die "kafka: storage format failed"; }
    fi
    # Kafka allocates fast and keeps little: a fixed heap with a large young
    # generation collected by one thread pauses a few ms every few seconds;
    # G1's collections stalled the broker for up to 100 ms on 2 busy cores
    start_bg kafka "$LOG/kafka.log" java -Xms1g -Xmx1g -Xmn512m -XX:+UseSerialGC \
        -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$kdir/log4j2.properties" \
        -cp "$KAFKA_LIB/*" kafka.Kafka "$kdir/server.properties"
    wait_ready Kafka "$BG_PID" 90 "$LOG/kafka.log" kafka_ready
    say "kafka: ready on 127.0.0.1:$KAFKA_PORT, pid $BG_PID ($(( $(now_ms) - t0 )) ms)"
}

kafka_stop() {
    local pid
    if pid=$(pid_of kafka kafka.Kafka); then
        stop_pids kafka TERM 60 "$pid"
        say "kafka: stopped"
    fi
    rm -f "$RUN/kafka.pid"
}

# ------------------------------------------------------------------ workers

worker_args() {
    echo --brokers "127.0.0.1:$KAFKA_PORT" --topic "$CHAT_TOPIC" \
         --group chat-workers --redis "127.0.0.1:$REDIS_PORT" \
         --partitions "$CHAT_PARTITIONS"
}

topic_ready() {
    kcat -b "127.0.0.1:$KAFKA_PORT" -L -m 2 -t "$CHAT_TOPIC" 2>/dev/null \
        | grep -q "topic \"$CHAT_TOPIC\" with [1-9]"
}

workers_start() {
    local n=${1:-$CHAT_WORKERS} i pid t0 started=() logs=""; t0=$(now_ms)
    [ -x "$CHAT_WORKER_BIN" ] \
        || die "no $CHAT_WORKER_BIN: run 'make build' (or STACK_SKIP=worker)"
    for (( i = 1; i <= n; i++ )); do
        if pid=$(pid_of "worker$i" chat_worker); then
            continue
        fi
        # shellcheck disable=SC2046
        start_bg "worker$i" "$LOG/worker$i.log" "$CHAT_WORKER_BIN" \
            $(worker_args) \
            --pg "host=127.0.0.1 port=$PG_PORT dbname=chat user=chat"
        started+=("$BG_PID")
        logs="$logs $LOG/worker$i.log"
    done
    [ ${#started[@]} -gt 0 ] || { say "workers: $n already running"; return 0; }
    # the first worker creates the topic; nginx needs it to produce
    wait_ready chat_worker "${started[0]}" 60 "$logs" topic_ready
    sleep 0.3
    for pid in "${started[@]}"; do
        alive "$pid" || { log_tail $logs; die "a chat_worker exited right after start"; }
    done
    say "workers: ${#started[@]} started (pids ${started[*]}), topic $CHAT_TOPIC present ($(( $(now_ms) - t0 )) ms)"
}

worker_pids() {
    local f pid
    shopt -s nullglob
    for f in "$RUN"/worker[0-9]*.pid; do
        f=${f##*/}
        pid=$(pid_of "${f%.pid}" chat_worker) && echo "$pid"
    done
    shopt -u nullglob
    return 0
}

workers_signal_stop() {
    local sig=$1 pids
    mapfile -t pids < <(worker_pids)
    if [ ${#pids[@]} -gt 0 ]; then
        if [ "$sig" = KILL ]; then
            kill -KILL "${pids[@]}" 2>/dev/null || true
            wait_gone 10 "${pids[@]}" || true
        else
            stop_pids workers "$sig" 30 "${pids[@]}"
        fi
        say "workers: ${#pids[@]} stopped (SIG$sig)"
    fi
    rm -f "$RUN"/worker[0-9]*.pid
}

# -------------------------------------------------------------------- nginx

nginx_conf() {
    local ndir=$DIR/nginx tmpl=$ROOT/conf/nginx.conf.in
    [ -f "$tmpl" ] || die "$tmpl missing"
    mkdir -p "$ndir/logs"
    if [ ! -s "$ndir/cert.pem" ] || [ ! -s "$ndir/key.pem" ]; then
        local out
        out=$(openssl req -x509 -newkey rsa:2048 -nodes -days 3650 \
                  -subj /CN=localhost \
                  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
                  -keyout "$ndir/key.pem" -out "$ndir/cert.pem" 2>&1) \
            || { echo "$out" >&2; die "nginx: openssl req failed"; }
        chmod 600 "$ndir/key.pem"
    fi
    sed -e "s|@PREFIX@|$ndir|g" \
        -e "s|@CHAT_PORT@|$CHAT_PORT|g" \
        -e "s|@CHAT_TLS_PORT@|$CHAT_TLS_PORT|g" \
        -e "s|@REDIS_PORT@|$REDIS_PORT|g" \
        -e "s|@KAFKA_PORT@|$KAFKA_PORT|g" \
        -e "s|@PG_PORT@|$PG_PORT|g" \
        -e "s|@SERVER_ID@|$CHAT_SERVER_ID|g" \
        -e "s|@TOPIC@|$CHAT_TOPIC|g" \
        -e "s|@JWT_SECRET@|$CHAT_JWT_SECRET|g" \
        "$tmpl" > "$ndir/nginx.conf.tmp"
    if grep -q '@[A-Z_]*@' "$ndir/nginx.conf.tmp"; then
        die "nginx: unknown placeholder in $tmpl: $(grep -o '@[A-Z_]*@' "$ndir/nginx.conf.tmp" | sort -u | tr '\n' ' ')"
    fi
    mv "$ndir/nginx.conf.tmp" "$ndir/nginx.conf"
    rm -rf "$ndir/app"; cp -R "$ROOT/clients" "$ndir/app"   # location /app/
}

nginx_ready() { port_busy "$CHAT_PORT" && port_busy "$CHAT_TLS_PORT"; }

nginx_start() {
    local pid t0 ndir=$DIR/nginx; t0=$(now_ms)
    if pid=$(pid_of nginx nginx); then
        say "nginx: already running (pid $pid)"
        return 0
    fi
    [ -x "$NGINX_BIN" ] || die "no $NGINX_BIN: run 'make build' (or STACK_SKIP=nginx)"
    need_free_port nginx "$CHAT_PORT" CHAT_PORT
    need_free_port nginx "$CHAT_TLS_PORT" CHAT_TLS_PORT
    nginx_conf
    start_bg nginx "$LOG/nginx.log" "$NGINX_BIN" -p "$ndir/" \
        -c "$ndir/nginx.conf" -e "$ndir/logs/error.log" -g 'daemon off;'
    wait_ready nginx "$BG_PID" 30 "$LOG/nginx.log $ndir/logs/error.log" nginx_ready
    say "nginx: ready on 127.0.0.1:$CHAT_PORT and :$CHAT_TLS_PORT (tls), pid $BG_PID ($(( $(now_ms) - t0 )) ms)"
}

nginx_stop() {
    local pid kids
    if pid=$(pid_of nginx nginx); then
        mapfile -t kids < <(children_of "$pid")
        # graceful first (QUIT waits for connections), then fast (TERM)
        kill -QUIT "$pid" 2>/dev/null || true
        if ! wait_gone 5 "$pid"; then
            say "nginx: still up 5s after QUIT: TERM"
            stop_pids nginx TERM 10 "$pid"
        fi
        [ ${#kids[@]} -gt 0 ] && stop_pids "nginx workers" KILL 5 "${kids[@]}"
        say "nginx: stopped"
    fi
    rm -f "$RUN/nginx.pid"
}

nginx_reload() {
    local pid old deadline k fresh
    pid=$(pid_of nginx nginx) || die "nginx is not running"
    nginx_conf
    old=" $(children_of "$pid" | tr '\n' ' ') "
    kill -HUP "$pid"
    # reloaded once a worker process appears that was not there before
    deadline=$(( $(now_ms) + 15000 ))
    while :; do
        fresh=0
        for k in $(children_of "$pid"); do
            case "$old" in *" $k "*) ;; *) fresh=1 ;; esac
        done
        [ $fresh = 1 ] && break
        alive "$pid" || { log_tail "$DIR/nginx/logs/error.log"; die "nginx exited on reload"; }
        if [ "$(now_ms)" -ge $deadline ]; then
            log_tail "$DIR/nginx/logs/error.log"
            die "nginx: no new worker 15s after HUP (bad config?)"
        fi
        sleep 0.1
    done
    say "nginx: reloaded"
}

# ---------------------------------------------------------------- the stack

start_all() {
    write_env
    local c
    for c in $STACK_SKIP; do
        case $c in pg|redis|kafka|worker|nginx) ;;
            *) die "STACK_SKIP: unknown component '$c' (pg redis kafka worker nginx)" ;;
        esac
    done
    skipped pg    || pg_start
    skipped redis || redis_start
    skipped kafka || kafka_start
    skipped worker || workers_start
    skipped nginx || nginx_start
    say "stack up in $DIR ($(elapsed)); env in $DIR/stack.env"
}

stop_all() {
    nginx_stop
    workers_signal_stop TERM
    kafka_stop
    redis_stop
    pg_stop
}

status_all() {
    local pid name
    for name in pg redis kafka nginx; do
        case $name in
            pg) if pg_running; then pid=$(head -n 1 "$PGDATA/postmaster.pid"); else pid=""; fi ;;
            redis) pid=$(pid_of redis redis-server || true) ;;
            kafka) pid=$(pid_of kafka kafka.Kafka || true) ;;
            nginx) pid=$(pid_of nginx nginx || true) ;;
        esac
        if [ -n "$pid" ]; then
            printf '%-8s running, pid %s\n' "$name" "$pid"
        else
            printf '%-8s stopped\n' "$name"
        fi
    done
    printf '%-8s %s\n' workers "$(worker_pids | tr '\n' ' ')"
}

run_foreground() {
    local stopping=0
    on_signal() {
        [ $stopping = 1 ] && return
        stopping=1
        echo
        say "stopping..."
        stop_all
        say "stopped"
        exit 0
    }
    trap on_signal INT TERM HUP
    start_all
    trap - EXIT
    local secret_hint="CHAT_JWT_SECRET=\$(cat $DIR/jwt_secret)"
    cat <<EOF

  ngx_chat is up.
    WebSocket:   ws://127.0.0.1:$CHAT_PORT/chat
    over TLS:    wss://127.0.0.1:$CHAT_TLS_PORT/chat   (self-signed: $DIR/nginx/cert.pem)
EOF
    if grep -q 'location *= */echo' "$DIR/nginx/nginx.conf" 2>/dev/null; then
        echo "    echo:        ws://127.0.0.1:$CHAT_PORT/echo"
    fi
    for u in alice bob; do echo "    web, as $u: http://127.0.0.1:$CHAT_PORT/app/web/#token=$(CHAT_JWT_SECRET=$CHAT_JWT_SECRET "$CHATCTL_BIN" token $u --device web 2>/dev/null)"; done
    cat <<EOF
    a token:     $secret_hint \\
                   $CHATCTL_BIN token alice --device phone
    then send it as 'Authorization: Bearer <token>' or ?access_token=<token>
    logs:        $LOG/  (nginx: $DIR/nginx/logs/error.log)
    state:       $DIR   (kept across runs)

  Ctrl-C stops everything.
EOF
    local reported=""
    while :; do
        sleep 2 &
        wait $! || true
        local name pid
        for name in redis kafka nginx; do
            skipped "$name" && continue
            if ! pid_of "$name" >/dev/null && [[ $reported != *" $name "* ]]; then
                say "warning: $name is not running any more (see $LOG/$name.log)"
                reported="$reported $name "
            fi
        done
    done
}

start_failed() {
    if [ "$1" != 0 ] && [ -z "${STACK_KEEP_ON_FAIL:-}" ]; then
        say "start failed: stopping what was started"
        stop_all || true
    fi
}

# --------------------------------------------------------------------- main

[ $# -ge 1 ] || { usage >&2; exit 2; }
case $1 in -h|--help|help) usage; exit 0 ;; esac
[ $# -ge 2 ] || { usage >&2; exit 2; }
ACTION=$1
[ "$(id -u)" = 0 ] || die "run as root (PostgreSQL is started as the postgres user)"

case $ACTION in
    start|run)
        setup_dir "$2" create
        config_from_env
        # a failed start leaves nothing running (STACK_KEEP_ON_FAIL=1 to debug)
        trap 'start_failed $?' EXIT
        if [ "$ACTION" = run ]; then
            run_foreground
        fi
        start_all
        trap - EXIT
        ;;
    stop)
        setup_dir "$2" existing
        if [ -s "$DIR/stack.env" ]; then config_from_file; else config_from_env; fi
        stop_all
        say "all stopped"
        ;;
    destroy)
        setup_dir "$2" existing
        if [ -s "$DIR/stack.env" ]; then config_from_file; else config_from_env; fi
        stop_all
        case $DIR in
            /|"$ROOT"|"$HOME"|/tmp|/root|/work) die "refusing to delete $DIR" ;;
        esac
        [ -d "$DIR/run" ] && [ -d "$DIR/log" ] \
            || die "$DIR does not look like a stack directory: not deleting it"
        if [ -L "$DIR/pg" ]; then rm -rf "$(readlink "$DIR/pg")"; fi
        rm -rf "$DIR"
        say "destroyed $DIR"
        ;;
    status)
        setup_dir "$2" existing; config_from_file; status_all ;;
    worker-kill)
        setup_dir "$2" existing; config_from_file; workers_signal_stop KILL ;;
    worker-stop)
        setup_dir "$2" existing; config_from_file; workers_signal_stop TERM ;;
    worker-start)
        setup_dir "$2" existing; config_from_file; workers_start "${3:-$CHAT_WORKERS}" ;;
    redis-stop)
        setup_dir "$2" existing; config_from_file; redis_stop ;;
    redis-start)
        setup_dir "$2" existing; config_from_file; redis_start ;;
    redis-restart)
        setup_dir "$2" existing; config_from_file; redis_stop; redis_start ;;
    kafka-stop)
        setup_dir "$2" existing; config_from_file; kafka_stop ;;
    kafka-start)
        setup_dir "$2" existing; config_from_file; kafka_start ;;
    pg-stop)
        setup_dir "$2" existing; config_from_file; pg_stop ;;
    pg-start)
        setup_dir "$2" existing; config_from_file; pg_start ;;
    nginx-stop)
        setup_dir "$2" existing; config_from_file; nginx_stop ;;
    nginx-start)
        setup_dir "$2" existing; config_from_file; nginx_start ;;
    nginx-reload)
        setup_dir "$2" existing; config_from_file; nginx_reload ;;
    *)
        usage >&2; exit 2 ;;
esac
