"""Pure monitoring computations: live performance against outcomes, drift against training.

`drift` and `performance` know no HTTP, no database, no BentoML: they only count and compare
what they are handed. `live` is the one adapter that reads the rows from persistence for the
service's routes, the CLI and the periodic job.
"""

from monitoring.drift import drift_report
from monitoring.performance import horizon_label, performance_report

__all__ = ["drift_report", "horizon_label", "performance_report"]
