import sys

from . import child_main

child_main(sys.argv[1:])
