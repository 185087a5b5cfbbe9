import sys

from neurep.cli.main import main

sys.exit(main())
