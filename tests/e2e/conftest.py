import sys
from pathlib import Path

# share the integration tests' helpers (topics, producers, exactly-once assertions)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
