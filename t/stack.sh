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
#
# The components are in t/stack/: common.sh (helpers), config.sh, pg.sh,
# redis.sh, kafka.sh, workers.sh, nginx.sh, all.sh (start, stop, status),
# run.sh (run: supervision); templates in t/stack/kafka/ and t/stack/pg/.
# What this script says also goes to DIR/log/stack.log.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PROG=${0##*/}
STACK_LIB=$ROOT/t/stack

# one file per component; the Kafka and PostgreSQL configurations are
# templates next to them
for f in common config pg redis kafka workers pusher nginx all run; do
    # shellcheck source=/dev/null
    source "$STACK_LIB/$f.sh"
done
unset f

usage() {
    cat <<EOF
usage: $PROG ACTION DIR [ARG]

  start DIR          start PostgreSQL, Redis, Kafka, the workers and nginx
  stop DIR           stop them all and wait until they are gone
  run DIR            start, print the URLs, restart what dies; Ctrl-C (or
                     SIGTERM) stops everything
  status DIR         which components run
  destroy DIR        stop, then delete DIR (and PostgreSQL's data outside it)

  fault injection, on a started DIR (reads DIR/stack.env):
  worker-kill DIR    SIGKILL every chat_worker
  worker-stop DIR    SIGTERM every chat_worker and wait
  worker-start DIR [N]  start the missing workers 1..N (default CHAT_WORKERS)
  pusher-stop DIR | pusher-start DIR
  redis-stop DIR | redis-start DIR | redis-restart DIR
  kafka-stop DIR     SIGTERM the broker and wait
  kafka-start DIR    start the broker and wait until it answers
  pg-stop DIR | pg-start DIR
  nginx-stop DIR | nginx-start DIR | nginx-reload DIR
  (what these stop, run leaves down until they start it again)

start reads (defaults in brackets): CHAT_PORT [8080], CHAT_TLS_PORT [8443],
REDIS_PORT [6379], PG_PORT [5432], KAFKA_PORT [9092], KAFKA_CTRL_PORT [9093],
CHAT_JWT_SECRET [generated once into DIR/jwt_secret], CHAT_WORKERS [2],
CHAT_SERVER_ID [s1], CHAT_BUILD_DIR [\$ROOT/build], CHAT_CACHE
[~/.cache/ngx_chat], NGINX_BIN, CHAT_WORKER_BIN, CHAT_PUSHER_BIN, CHATCTL_BIN,
KAFKA_LIB, CHAT_WORKER_METRICS_PORTS [spare ones, comma separated: worker N
serves metrics on the Nth],
STACK_SKIP (components not to start, e.g. "nginx worker").
EOF
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
    pusher-stop)
        setup_dir "$2" existing; config_from_file; pusher_stop ;;
    pusher-start)
        setup_dir "$2" existing; config_from_file; pusher_start ;;
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
