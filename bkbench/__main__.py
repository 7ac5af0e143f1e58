import sys

from bkbench.cli import main

sys.exit(main())
