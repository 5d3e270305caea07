# t/stack/pg.sh: PostgreSQL for t/stack.sh (sourced).
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
        fill_template "$STACK_LIB/pg/ngx_chat.conf.in" "$PGDATA/ngx_chat.conf" \
            PG_PORT="$PG_PORT" PGSOCK="$PGSOCK"
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
    mark_up pg
    say "pg: ready on 127.0.0.1:$PG_PORT ($(( $(now_ms) - t0 )) ms)"
}

# sql/NNN_*.sql in order, each in one transaction with its row in
# schema_migrations (version = NNN): chatctl migrate, as an operator runs
# it, so that there is one implementation.
pg_migrate() {
    local out line
    [ -x "$CHATCTL_BIN" ] \
        || die "no $CHATCTL_BIN: run 'make build' (chatctl migrate applies sql/)"
    out=$("$CHATCTL_BIN" migrate --dir "$ROOT/sql" \
              --pg "host=127.0.0.1 port=$PG_PORT dbname=chat user=chat" 2>&1) \
        || { printf '%s\n' "$out" >&2; die "pg: chatctl migrate failed"; }
    while IFS= read -r line; do
        [ -n "$line" ] && say "pg: $line"
    done <<< "$out"
}

pg_stop() {
    mark_down pg
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
