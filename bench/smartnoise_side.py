"""The SmartNoise SQL side of bench/smartnoise_compare.py; runs in its own venv (it needs OpenDP 0.14).

    python bench/smartnoise_side.py <csv> <runs> <epsilon per statistic> <delta>
Prints one JSON object: per-run released rows and wall times.
"""

import json
import sys
import time

import pandas as pd
import snsql
from snsql import Privacy

QUERY = (
    "SELECT department, COUNT(*) AS n, AVG(salary) AS avg_salary FROM public.employees GROUP BY department"
)
META = {
    "Collection": {
        "public": {
            "employees": {
                "max_ids": 1,
                "row_privacy": False,
                "censor_dims": True,
                "user_id": {"type": "int", "private_id": True},
                "department": {"type": "string"},
                "salary": {"type": "float", "lower": 20000, "upper": 250000},
            }
        }
    }
}


def main() -> None:
    csv, runs, epsilon, delta = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
    df = pd.read_csv(csv, names=["user_id", "department", "salary", "age", "hire_date"])
    reader = snsql.from_df(df, privacy=Privacy(epsilon=epsilon, delta=delta), metadata=META)
    cost = reader.get_privacy_cost(QUERY)
    results, times = [], []
    for _ in range(runs):
        start = time.perf_counter()
        rows = reader.execute(QUERY)
        times.append(time.perf_counter() - start)
        results.append([[r[0], float(r[1]), float(r[2])] for r in rows[1:]])
    print(json.dumps({"cost": [float(cost[0]), float(cost[1])], "runs": results, "times": times}))


if __name__ == "__main__":
    main()
