import sys

from sailvl.train.cli import main

sys.exit(main())
