import sys

from rlfleet.cli import main

sys.exit(main())
