import sys

from sailvl.cli import main

sys.exit(main())
