import sys

from readout.cli import main

sys.exit(main())
