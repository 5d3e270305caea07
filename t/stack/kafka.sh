# t/stack/kafka.sh: a single-node KRaft Kafka for t/stack.sh (sourced); its
# configuration from the templates in t/stack/kafka/.  Started in phases
# as Redis is (t/stack/redis.sh); kafka_ready is its probe, so the phase
# that waits for it is kafka_ready_wait.

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
    local pid
    if pid=$(pid_of kafka kafka.Kafka); then
        say "kafka: already running (pid $pid)"
        mark_up kafka
        return 0
    fi
    START_T0=$(now_ms)
    kafka_prepare
    kafka_launch
    kafka_ready_wait
}

kafka_prepare() {
    local kdir=$DIR/kafka
    command -v java >/dev/null || die "java not installed (make deps)"
    command -v kcat >/dev/null || die "kcat not installed (make deps)"
    ls "$KAFKA_LIB"/kafka_2.13-*.jar >/dev/null 2>&1 \
        || die "no Kafka jars in $KAFKA_LIB (make kafka-jars)"
    need_free_port Kafka "$KAFKA_PORT" KAFKA_PORT
    need_free_port "Kafka controller" "$KAFKA_CTRL_PORT" KAFKA_CTRL_PORT
    mkdir -p "$kdir/data"
    [ -s "$kdir/cluster.id" ] || kafka_cluster_id > "$kdir/cluster.id"

    fill_template "$STACK_LIB/kafka/server.properties.in" \
        "$kdir/server.properties" KAFKA_PORT="$KAFKA_PORT" \
        KAFKA_CTRL_PORT="$KAFKA_CTRL_PORT" KAFKA_DATA="$kdir/data"
    fill_template "$STACK_LIB/kafka/log4j2.properties.in" \
        "$kdir/log4j2.properties"
    if [ ! -s "$kdir/data/meta.properties" ]; then
        say "kafka: formatting $kdir/data (cluster $(cat "$kdir/cluster.id"))"
        kafka_java kafka.tools.StorageTool format -t "$(cat "$kdir/cluster.id")" \
            -c "$kdir/server.properties" --ignore-formatted >>"$LOG/kafka.log" 2>&1 \
            || { log_tail "$LOG/kafka.log"; die "kafka: storage format failed"; }
    fi
}

kafka_launch() {
    local kdir=$DIR/kafka
    # Kafka allocates fast and keeps little: a fixed heap with a large young
    # generation collected by one thread pauses a few ms every few seconds;
    # G1's collections stalled the broker for up to 100 ms on 2 busy cores
    start_bg kafka "$LOG/kafka.log" java -Xms1g -Xmx1g -Xmn512m -XX:+UseSerialGC \
        -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$kdir/log4j2.properties" \
        -cp "$KAFKA_LIB/*" kafka.Kafka "$kdir/server.properties"
    mark_up kafka
}

kafka_ready_wait() {
    wait_ready Kafka "$BG_PID" 90 "$LOG/kafka.log" kafka_ready
    say "kafka: ready on 127.0.0.1:$KAFKA_PORT, pid $BG_PID ($(( $(now_ms) - START_T0 )) ms)"
}

kafka_stop() {
    local pid
    mark_down kafka
    if pid=$(pid_of kafka kafka.Kafka); then
        stop_pids kafka TERM 60 "$pid"
        say "kafka: stopped"
    fi
    rm -f "$RUN/kafka.pid"
}
