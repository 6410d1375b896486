import sys

from bench.cli import entry

sys.exit(entry())
