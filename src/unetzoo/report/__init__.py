"""See the results: a run's report page (`report.html`) and a comparison of runs.

    from unetzoo.report import write_report, write_comparison
    write_report("runs/exp1")                       # runs/exp1/report.html
    write_comparison(["runs/a", "runs/b"], "ab.html")
"""

from .collect import RunData, collect_run
from .compare import compare_runs, write_comparison
from .page import ReportOptions, write_report

__all__ = ["ReportOptions", "RunData", "collect_run", "compare_runs", "write_comparison",
           "write_report"]
