import sys

from vlavad.cli import main

sys.exit(main())
