"""Tests run at the `ci` scale (quiet, small) on the offline site unless the caller chose otherwise."""
import os

import matplotlib

os.environ.setdefault("LABKIT_SCALE", "ci")
os.environ.setdefault("LABKIT_SITE", "offline")  # never download in tests; notebooks (nbval) inherit this
matplotlib.use("Agg")
