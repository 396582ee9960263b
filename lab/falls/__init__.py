"""Training and honest evaluation of the fall detector (``ankang train fall``, ``ankang eval fall``).

``dataset``: the data (UCI HAPT's real daily living, simulated clips) and the candidates the
hub's ``CandidateFinder`` finds in them; ``training``: the training set, the fit, the
threshold and the model file; ``evaluation``: held-out simulated clips and HAPT by subject;
``report``: the Markdown region and the chart. Every step runs the same ``CandidateFinder``
and ``FallDetector`` as the hub (``hub.detectors.fall``), which is the runtime detector.
"""

from lab.falls.dataset import DatasetError, Recipe, load_hapt, progress_printer
from lab.falls.evaluation import DOCS_REGION, evaluate
from lab.falls.report import plot_report, report_markdown, write_report
from lab.falls.training import train

__all__ = [
    "DOCS_REGION",
    "DatasetError",
    "Recipe",
    "evaluate",
    "load_hapt",
    "plot_report",
    "progress_printer",
    "report_markdown",
    "train",
    "write_report",
]
