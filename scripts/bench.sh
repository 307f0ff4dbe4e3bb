#!/usr/bin/env bash
# Runs the crypto and ferry benchmarks COUNT times each (default 5) and prints the median of every
# figure; then measures the ferry end to end against NATS JetStream in the same run (ferrybench:
# RUNS runs of each, default 3, of N messages, default 200000, and the ferry's p99 latency at
# 2000 msgs/s offered). Before the JetStream comparison it measures the gateway's WeChat Pay
# callback path against bare PostgreSQL inserts (see below). Writes the report to
# bench-report.txt; the last two lines are
# "ferry msgs/s: N" (the ferry's end-to-end median) and "ferry/jetstream ratio: R".
# The ferry runs on PostgreSQL (FINEPAY_TEST_PG_URL or the local server); JetStream on the NATS
# server at 127.0.0.1:4222, or, when none answers there, on a nats-server (Debian's package,
# installed when missing) started for the benchmark in a temporary folder and stopped after it.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${COUNT:-5}
raw=$(mktemp)
work=$(mktemp -d)
nats_pid=
cleanup() {
  if [ -n "$nats_pid" ]; then kill "$nats_pid" 2>/dev/null || true; wait "$nats_pid" 2>/dev/null || true; fi
  rm -rf "$raw" "$work"
}
trap cleanup EXIT
{
  echo "# machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(go version | cut -d' ' -f3)"
  echo "# date: $(date -u +%Y-%m-%dT%H:%M:%SZ), medians of $count runs"
} | tee bench-report.txt
go test -run '^$' -bench . -benchtime 1s -count "$count" ./shared/gm/ ./shared/tlsgm/ >>"$raw"
go test -run '^$' -bench 'FerryThroughput' -benchtime 3x -count "$count" -timeout 30m ./ferry/... >>"$raw"
# Median of each benchmark's figures, per unit.
awk '
  /^Benchmark/ {
    name=$1; sub(/-[0-9]+$/, "", name)
    for (i=3; i<NF; i+=2) { key=name" "$(i+1); n[key]++; v[key, n[key]]=$i; if (!(key in seen)) { seen[key]=1; order[++k]=key } }
  }
  END {
    for (j=1; j<=k; j++) {
      key=order[j]; m=n[key]
      for (a=1; a<=m; a++) arr[a]=v[key, a]
      for (a=1; a<=m; a++) for (b=a+1; b<=m; b++) if (arr[b]+0 < arr[a]+0) { t=arr[a]; arr[a]=arr[b]; arr[b]=t }
      med = (m%2) ? arr[(m+1)/2] : (arr[m/2]+arr[m/2+1])/2
      split(key, kk, " ")
      printf "%-40s %14.1f %s\n", kk[1], med, kk[2]
      if (kk[2]=="msgs/s") ferry=med
    }
    if (ferry=="") { print "no ferry throughput figure" > "/dev/stderr"; exit 1 }
  }' "$raw" | tee -a bench-report.txt

# The gateway's callback path against bare PostgreSQL inserts, same machine, same run: verified
# WeChat Pay v3 notifications per second through POST /notify/wechat (signature, AES-GCM
# decryption, stored, recorded with its ferry outbox row), and single-row INSERTs, 32 concurrent
# callers and connections each; CALLBACK_N (default 3000) of each per run, COUNT runs alternating
# the two, medians. Ends with "callback/pg-insert ratio: R".
go test -c -o "$work/payment.test" ./internet-gateway/internal/payment/
for _ in $(seq 1 "$count"); do
  (cd internet-gateway/internal/payment && "$work/payment.test" -test.run '^$' -test.bench 'BenchmarkCallback' \
    -test.benchtime "${CALLBACK_N:-3000}x" -test.timeout 30m) >>"$work/callback.txt"
done
{
  echo "# callback: $(uptime | sed 's/.*load average/load average/')"
  awk '
    /^BenchmarkCallbackWeChatNotify/ { for (i=3; i<NF; i++) if ($(i+1)=="notifications/s") cb[++nc]=$i }
    /^BenchmarkCallbackPGInsert/     { for (i=3; i<NF; i++) if ($(i+1)=="inserts/s") pg[++np]=$i }
    function median(a, n,   i, j, t) {
      for (i=1; i<=n; i++) for (j=i+1; j<=n; j++) if (a[j]+0 < a[i]+0) { t=a[i]; a[i]=a[j]; a[j]=t }
      return (n%2) ? a[(n+1)/2] : (a[n/2]+a[n/2+1])/2
    }
    END {
      if (nc==0 || np==0) { print "no callback benchmark figures" > "/dev/stderr"; exit 1 }
      c=median(cb, nc); p=median(pg, np)
      printf "callback (WeChat Pay v3 notify, PostgreSQL, 32 conns)  %10.1f notifications/s (median of %d)\n", c, nc
      printf "pg-insert (single-row INSERT, 32 conns)                %10.1f inserts/s (median of %d)\n", p, np
      printf "callback/pg-insert ratio: %.2f\n", c/p
    }' "$work/callback.txt"
} | tee -a bench-report.txt

# The ferry against NATS JetStream, same machine, same run.
nats_up() { (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null; }
if ! nats_up; then
  if ! command -v nats-server >/dev/null 2>&1; then
    echo "# installing nats-server (Debian package)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q nats-server >/dev/null
  fi
  echo "# starting nats-server -js on 127.0.0.1:4222 for the benchmark" >&2
  nats-server -a 127.0.0.1 -p 4222 -js -sd "$work/nats" >"$work/nats.log" 2>&1 &
  nats_pid=$!
  for _ in $(seq 1 100); do nats_up && break; sleep 0.1; done
  nats_up || { echo "nats-server did not start:" >&2; cat "$work/nats.log" >&2; exit 1; }
fi
go build -o "$work/ferrybench" ./ferry/cmd/ferrybench
"$work/ferrybench" -nats nats://127.0.0.1:4222 -runs "${RUNS:-3}" -n "${N:-200000}" | tee -a bench-report.txt
