# t/stack/config.sh: the state directory and the configuration of
# t/stack.sh (sourced): from the environment for a start, from
# DIR/stack.env for the other actions.

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
    CHAT_PUSH_ENDPOINTS=${CHAT_PUSH_ENDPOINTS:-}
    CHAT_PUSHER_ARGS=${CHAT_PUSHER_ARGS:-}
    CHAT_MEDIA_KEEP_MS=${CHAT_MEDIA_KEEP_MS:-86400000}
    CHAT_BUILD_DIR=${CHAT_BUILD_DIR:-$ROOT/build}
    CHAT_CACHE=${CHAT_CACHE:-${HOME:-/root}/.cache/ngx_chat}
    KAFKA_LIB=${KAFKA_LIB:-$CHAT_CACHE/kafka-lib}
    NGINX_BIN=${NGINX_BIN:-$CHAT_BUILD_DIR/nginx/sbin/nginx}
    CHAT_WORKER_BIN=${CHAT_WORKER_BIN:-$CHAT_BUILD_DIR/bin/chat_worker}
    CHATCTL_BIN=${CHATCTL_BIN:-$CHAT_BUILD_DIR/bin/chatctl}
    CHAT_PUSHER_BIN=${CHAT_PUSHER_BIN:-$CHAT_BUILD_DIR/bin/chat_pusher}
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
    # a metrics port for each worker the stack may run (worker-start may
    # add a few to CHAT_WORKERS), spare now, the same across restarts
    if [ -z "${CHAT_WORKER_METRICS_PORTS:-}" ]; then
        CHAT_WORKER_METRICS_PORTS=$(spare_ports $(( CHAT_WORKERS > 4 ? CHAT_WORKERS : 4 )) | tr ' ' ',')
    fi
    [[ $CHAT_WORKER_METRICS_PORTS =~ ^[0-9]+(,[0-9]+)*$ ]] \
        || die "CHAT_WORKER_METRICS_PORTS=$CHAT_WORKER_METRICS_PORTS: ports, comma separated"
    # chat_pusher's, chosen the same way
    if [ -z "${CHAT_PUSHER_METRICS_PORT:-}" ]; then
        CHAT_PUSHER_METRICS_PORT=$(spare_ports 1)
    fi
    [[ $CHAT_PUSHER_METRICS_PORT =~ ^[0-9]+$ ]] \
        || die "CHAT_PUSHER_METRICS_PORT=$CHAT_PUSHER_METRICS_PORT: not a port"
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
        env_line CHAT_WORKER_METRICS_PORTS "$CHAT_WORKER_METRICS_PORTS"
        env_line CHAT_PUSHER_METRICS_PORT "$CHAT_PUSHER_METRICS_PORT"
        env_line CHAT_SQL_DIR "$ROOT/sql"
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
        env_line CHAT_PUSHER_BIN "$CHAT_PUSHER_BIN"
        env_line CHAT_LOG_DIR "$LOG"
        env_line CHAT_RUN_DIR "$RUN"
        env_line STACK_SKIP "$STACK_SKIP"
        env_line CHAT_PUSH_ENDPOINTS "$CHAT_PUSH_ENDPOINTS"
        env_line CHAT_PUSHER_ARGS "$CHAT_PUSHER_ARGS"
        env_line CHAT_MEDIA_KEEP_MS "$CHAT_MEDIA_KEEP_MS"
    } > "$tmp"
    mv "$tmp" "$DIR/stack.env"
}
