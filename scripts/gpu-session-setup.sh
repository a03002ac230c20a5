# Sourced by the scripts/gpu-session-*.sh device-call scripts: from the repository root, unpack the prebuilt
# binaries (scripts/devpack.sh -> gpu-check.sh prebuilt), set B (their build folder), IGNIS_DATA, LOG ($OUT or
# ./gpu-logs), LD_LIBRARY_PATH / IGNIS_BUILD, and record the device in $LOG/device.txt.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export IGNIS_DATA=$PWD/.devcarry/data LOG=${OUT:-gpu-logs}; mkdir -p "$LOG"
timeout 60 scripts/gpu-check.sh prebuilt >/dev/null 2>&1
B=/tmp/ignis-prebuilt/build-gpu; export LD_LIBRARY_PATH=/tmp/ignis-prebuilt/lib IGNIS_BUILD=$B
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$LOG/device.txt"
source scripts/gpu-lib.sh  # decode_rows, enc_bench
