import sys

from bkbench.harness.cli import main

sys.exit(main())
