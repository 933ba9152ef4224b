"""The benchmark's harness. scripts/lib holds what it shares with the demo (the CNI
chain runner, the mount table, entering a netns): put it on the import path."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "scripts", "lib"))
