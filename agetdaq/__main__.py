import sys

from agetdaq.readout.cli import main

sys.exit(main())
