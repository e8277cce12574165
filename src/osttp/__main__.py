import sys

from osttp.cli import main

sys.exit(main())
