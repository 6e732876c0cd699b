# Starts the S3 servers the tests use, on free loopback ports, and exports their coordinates as
# EXPOSR_TEST_<SERVER>_{ENDPOINT,BUCKET,ACCESS_KEY,SECRET_KEY,REGION}. Source it; call
# start_s3_servers; the servers stop when the sourcing shell exits.

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_for_http() {
    local url=$1 what=$2
    for _ in $(seq 1 100); do
        if curl -s -o /dev/null "$url"; then return 0; fi
        sleep 0.1
    done
    echo "error: $what did not start at $url; its log:" >&2
    cat "$3" >&2
    return 1
}

s3_pids=()
stop_s3_servers() {
    for pid in "${s3_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${s3_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    s3_pids=()
}

start_moto() {
    local dir=$1 port
    port=$(free_port)
    "$EXPOSR_ROOT/.venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$dir/moto.log" 2>&1 &
    s3_pids+=($!)
    wait_for_http "http://127.0.0.1:$port/" moto "$dir/moto.log"
    export EXPOSR_TEST_S3_ENDPOINT="http://127.0.0.1:$port"
    export EXPOSR_TEST_S3_BUCKET=exposr-test
    export EXPOSR_TEST_S3_ACCESS_KEY=testing
    # Distinctive, so that scripts/check-secrets can find it in the test output if it leaks.
    export EXPOSR_TEST_S3_SECRET_KEY=moto-secret-5b1d9e0c
    export EXPOSR_TEST_S3_REGION=us-east-1
    AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing "$EXPOSR_ROOT/.venv/bin/python" - <<PY
import boto3
boto3.client("s3", endpoint_url="$EXPOSR_TEST_S3_ENDPOINT", region_name="us-east-1").create_bucket(Bucket="exposr-test")
PY
}

start_garage() {
    local dir=$1 s3_port rpc_port
    s3_port=$(free_port)
    rpc_port=$(free_port)
    mkdir -p "$dir/garage"
    sed -e "s|@DIR@|$dir/garage|g" -e "s|@S3_PORT@|$s3_port|g" -e "s|@RPC_PORT@|$rpc_port|g" \
        "$EXPOSR_ROOT/infra/s3/garage-test.toml" >"$dir/garage/garage.toml"
    GARAGE_DEFAULT_ACCESS_KEY=GK0123456789abcdef01234567 \
    GARAGE_DEFAULT_SECRET_KEY=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef \
    GARAGE_DEFAULT_BUCKET=exposr-test \
        garage -c "$dir/garage/garage.toml" server --single-node --default-bucket \
        >"$dir/garage.log" 2>&1 &
    s3_pids+=($!)
    wait_for_http "http://127.0.0.1:$s3_port/" garage "$dir/garage.log"
    export EXPOSR_TEST_GARAGE_ENDPOINT="http://127.0.0.1:$s3_port"
    export EXPOSR_TEST_GARAGE_BUCKET=exposr-test
    export EXPOSR_TEST_GARAGE_ACCESS_KEY=GK0123456789abcdef01234567
    export EXPOSR_TEST_GARAGE_SECRET_KEY=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
    export EXPOSR_TEST_GARAGE_REGION=garage
}

start_s3_servers() {
    local dir
    dir=$(mktemp -d "${TMPDIR:-/tmp}/exposr-s3.XXXXXX")
    trap 'stop_s3_servers; rm -rf "'"$dir"'"' EXIT
    start_moto "$dir"
    start_garage "$dir"
}
