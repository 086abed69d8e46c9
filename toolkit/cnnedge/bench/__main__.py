"""``python -m cnnedge.bench SPEC.json``: one benchmark row in a fresh process (bench.worker)."""

import sys

from cnnedge.bench.worker import main

sys.exit(main(sys.argv[1:]))
