import sys

from pgpoolsync.cli import main

sys.exit(main())
