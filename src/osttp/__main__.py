import sys

from osttp.experiment.cli import main

sys.exit(main())
