"""The hand-run baseline's submission: run by ``flink run -d -s SAVEPOINT -py`` on a job script.

What a team does by hand today: the job module is imported, its graph built with the same Flink
options flowship sets, and handed to the cluster ``flink run`` was pointed at (the savepoint
comes from ``-s``). No gate, no ledger, no health watch.

    flink run -d -s SAVEPOINT -py bench/handrun_submit.py -- --script JOB.py \
        --kafka-bootstrap HOST:PORT --state-dir DIR
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--script", required=True)
    parser.add_argument("--kafka-bootstrap", required=True)
    parser.add_argument("--state-dir", required=True)
    args = parser.parse_args()
    script = Path(args.script).resolve()
    sys.path.insert(0, str(script.parent))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    # imported under its own name, so that the TaskManager's Python imports the same module
    spec = importlib.util.spec_from_file_location(script.stem, script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[script.stem] = module
    spec.loader.exec_module(module)

    from flowship.job._runtime import flink_options, make_env
    from flowship.job._settings import Settings

    job = module.job
    settings = Settings(kafka_bootstrap=args.kafka_bootstrap, state_dir=Path(args.state_dir))
    env = make_env(flink_options(job, settings))
    job.build(env, settings)
    client = env.execute_async(f"{job.name}@{job.version}")
    print(f"submitted job_id={client.get_job_id()}", flush=True)


if __name__ == "__main__":
    main()
