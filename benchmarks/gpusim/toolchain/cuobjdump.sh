#!/bin/bash
# CUDA 13.2's cuobjdump (PyPI; no 11.x wheel exists); after "-xptx NAME BIN" the extracted PTX
# is rewritten (fix_ptx.py) so that the simulator's parser accepts it.
here="$(dirname "$0")"
"$here/cuobjdump.real" "$@"
rc=$?
if [ "$1" = "-xptx" ] && [ -f "$2" ]; then python3 "$here/fix_ptx.py" "$2"; fi
exit $rc
