#!/usr/bin/env bash
# Grid search over the policy knobs that trade cost against under-provisioning:
# signal window, scale-up and scale-down marks, scale-down window, panic on or off
# (scale-down at up to 100 % per 15 s throughout). Every variant is replayed with
# `spillway simulate` on the trace given; one line per variant, then the HPA baseline.
#
#   benches/simulate/sweep.sh TARGET_PER_REPLICA SIMULATE_ARGS...
#   benches/simulate/sweep.sh 20 --trace ../shared/traces/azure_functions_2019_sample/1000_inv.csv --regular-nodes 5
#
# Needs target/release/spillway (cargo build --release -p spillway-scaler --bin spillway).
set -euo pipefail
target="$1"
shift
spillway="${SPILLWAY:-target/release/spillway}"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
policy="$dir/grid.yaml"
cat > "$policy" <<YAML
apiVersion: spillway.io/v1
kind: ScalingPolicy
metadata: { tenant: sweep }
spec:
  namespaces: [sweep]
  defaults:
    replicas: { min: 1, max: 200 }
    signals: { window: 60s, qps: { targetPerReplica: $target } }
    hysteresis: { scaleUpAbove: 1.0, scaleDownBelow: 0.75, upWindow: 0s, downWindow: 600s }
    limits: { up: { pods: 4, percent: 100, per: 15s }, down: { percent: 100, per: 15s } }
    panic: { window: 6s, threshold: 2.0, stableWindow: 60s }
    hpaTolerance: 0
    placement: { burst: { enabled: true }, requests: { cpu: "1", memory: 2Gi } }
  apps:
YAML
apps=()
# Marks in percent of the target (app names allow only letters, digits and '-').
for window in 20 30 60; do
  for up in 100 105 110 115; do
    for down in 80 85 90 95; do
      for down_window in 120 240 300; do
        for panic in true false; do
          app="w${window}-up${up}-down${down}-dw${down_window}-panic-${panic}"
          apps+=("$app")
          echo "    $app: { signals: { window: ${window}s }, hysteresis: { scaleUpAbove: $((up / 100)).$(printf %02d $((up % 100))), scaleDownBelow: 0.$down, downWindow: ${down_window}s }, panic: { enabled: $panic } }" >> "$policy"
        done
      done
    done
  done
done
echo "variant under-provisioned-replica-s scaling-actions cost"
hpa=""
for app in "${apps[@]}"; do
  table="$("$spillway" simulate --policy "$policy" --app "$app" "$@" 2>/dev/null)"
  echo "$app $(grep '^| Spillway ' <<<"$table" | awk -F'|' '{print $3, $5, $9}' | tr -s ' ')"
  hpa="$(grep '^| HPA (defaults) ' <<<"$table" | awk -F'|' '{print $3, $5, $9}' | tr -s ' ')"
done
echo "HPA(defaults) $hpa"
