"""Tests run at the `ci` scale (quiet, small) unless the caller chose another."""
import os

import matplotlib

os.environ.setdefault("LABKIT_SCALE", "ci")
matplotlib.use("Agg")
