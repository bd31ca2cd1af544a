"""`python -m bench` (also the `chirp-bench` script, and `chirp bench` through the `chirp.commands`
entry point): the benchmark's own entry point, above everything it measures."""

import sys

from bench import main

if __name__ == "__main__":
    sys.exit(main())
