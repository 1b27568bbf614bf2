import sys

from findvl.cli import main

sys.exit(main())
