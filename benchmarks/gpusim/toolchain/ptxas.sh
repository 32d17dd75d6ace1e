#!/bin/bash
# CUDA 13's ptxas (the PTX is ISA 9.0, newer than 11.8's ptxas reads), its -v report trimmed to
# what the simulator's ptxinfo parser, written for older ptxas, understands.
tmp=$(mktemp)
"$CUDA13_HOME/bin/ptxas" "$@" 2> "$tmp"
rc=$?
grep -v "Compile time" "$tmp" | sed -E 's/, used [0-9]+ barriers//; s/, [0-9]+ bytes cumulative stack size//' >&2
rm -f "$tmp"
exit $rc
