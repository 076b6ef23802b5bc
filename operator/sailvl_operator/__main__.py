import sys

from sailvl_operator.main import main

sys.exit(main())
