"""Print the task graph of the DAGs in a folder as Airflow parses them, as JSON (run with the Airflow virtualenv).

Used by scripts/form_diagrams.py to draw the MWAA form from its synthesized DAG folder: the task ids, their upstream
tasks, retries, timeout, trigger rule and load concurrency come from Airflow's own DagBag, not from reading the file.

    .venv-airflow/bin/python scripts/dag_graph.py DAG_FOLDER OUT.json

The graph goes to a file, because Airflow logs to standard output while it fills the DagBag.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile


def main(folder: str, out_path: str) -> int:
    home = tempfile.mkdtemp(prefix="dag-graph-")
    os.environ.update(
        {
            "AIRFLOW_HOME": home,
            "AIRFLOW__CORE__DAGS_FOLDER": folder,
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "eu-west-1"),
        }
    )
    sys.path.insert(0, folder)  # as Airflow and MWAA do: the DAG imports its modules from beside it
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=folder)
    if bag.import_errors or not bag.dags:
        print(json.dumps({"errors": {str(k): str(v) for k, v in bag.import_errors.items()}, "dags": sorted(bag.dags)}), file=sys.stderr)
        return 1
    out = {}
    for dag_id, dag in sorted(bag.dags.items()):
        out[dag_id] = [
            {
                "id": task.task_id,
                "upstream": sorted(task.upstream_task_ids),
                "retries": int(task.retries or 0),
                "timeout_seconds": int(task.execution_timeout.total_seconds()) if task.execution_timeout else None,
                "trigger_rule": str(getattr(task.trigger_rule, "value", task.trigger_rule)),
                "max_active_tis_per_dag": task.max_active_tis_per_dag,
                "on_failure_callback": bool(task.on_failure_callback),
            }
            for task in dag.tasks
        ]
    with open(out_path, "w", encoding="utf-8") as handle:
        json.dump(out, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
