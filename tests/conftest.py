import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # test helpers (test_data_helpers) import by name
