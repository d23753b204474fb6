import sys

from edgemer.cli import main

sys.exit(main())
