import sys

from fibroclass.cli.app import main

sys.exit(main())
