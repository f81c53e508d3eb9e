import sys

from pgpoolsync.main import main

sys.exit(main())
