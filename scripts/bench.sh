#!/usr/bin/env bash
# Runs the crypto and ferry benchmarks COUNT times each (default 5), prints the median of every
# figure, writes the report to bench-report.txt and ends with "ferry msgs/s: N".
# The ferry benchmark runs on PostgreSQL (FINEPAY_TEST_PG_URL or the local server).
set -euo pipefail
cd "$(dirname "$0")/.."
count=${COUNT:-5}
raw=$(mktemp)
trap 'rm -f "$raw"' EXIT
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
    printf "ferry msgs/s: %d\n", ferry
  }' "$raw" | tee -a bench-report.txt
